package bpfsock

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
	"golang.org/x/sys/unix"
)

// Capability numbers (linux/capability.h); CAP_PERFMON and CAP_BPF exist
// since Linux 5.8, before which CAP_SYS_ADMIN stands for both.
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// MissingCapabilities names, in words, the capabilities this process
// lacks to load and attach a policy: loading a program (CAP_BPF), one that
// hooks networking (CAP_NET_ADMIN), one that reads kernel memory, as the
// iterator does (CAP_PERFMON); CAP_SYS_ADMIN stands for all three. With
// otherNetns, also entering another network namespace (CAP_SYS_ADMIN).
// It returns nil when nothing is missing, and an error when the process's
// capabilities cannot be read.
func MissingCapabilities(otherNetns bool) ([]string, error) {
	return missingCapabilities(otherNetns, capBPF, capNetAdmin, capPerfmon)
}

// MissingIterCapabilities is [MissingCapabilities] for the readers' TCP
// iterators ([Kernel.DumpIter], [Kernel.SetIter]), which hook nothing:
// CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN.
func MissingIterCapabilities(otherNetns bool) ([]string, error) {
	return missingCapabilities(otherNetns, capBPF, capPerfmon)
}

var capNames = map[uint]string{capNetAdmin: "CAP_NET_ADMIN", capSysAdmin: "CAP_SYS_ADMIN", capPerfmon: "CAP_PERFMON", capBPF: "CAP_BPF"}

// missingCapabilities names those of caps that this process lacks, and
// CAP_SYS_ADMIN with otherNetns; CAP_SYS_ADMIN stands for every one.
func missingCapabilities(otherNetns bool, caps ...uint) ([]string, error) {
	eff, err := effectiveCapabilities()
	if err != nil {
		return nil, err
	}
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	if has(capSysAdmin) {
		return nil, nil
	}
	var missing, names []string
	for _, c := range caps {
		names = append(names, capNames[c])
		if !has(c) {
			missing = append(missing, capNames[c])
		}
	}
	if len(missing) > 0 {
		all := strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
		missing[len(missing)-1] += fmt.Sprintf(" (or CAP_SYS_ADMIN, which stands for %s)", all)
	}
	if otherNetns {
		missing = append(missing, "CAP_SYS_ADMIN (to enter the network namespaces of other processes)")
	}
	return missing, nil
}

// effectiveCapabilities reads CapEff from /proc/self/status.
func effectiveCapabilities() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("bpfsock: reading this process's capabilities: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return 0, fmt.Errorf("bpfsock: /proc/self/status: CapEff %q", v)
		}
		return n, nil
	}
	return 0, errors.New("bpfsock: /proc/self/status has no CapEff")
}

// Lockdown returns the kernel's lockdown mode ("none", "integrity" or
// "confidentiality"), or "" where the kernel has no lockdown LSM.
func Lockdown() string {
	b, err := os.ReadFile("/sys/kernel/security/lockdown")
	if err != nil {
		return ""
	}
	for _, w := range strings.Fields(string(b)) {
		if strings.HasPrefix(w, "[") && strings.HasSuffix(w, "]") {
			return strings.Trim(w, "[]")
		}
	}
	return ""
}

// Probe checks that the kernel offers what a policy's programs use, with
// cilium/ebpf's features package and the kernel's BTF, and returns an
// error that names each thing missing, with the Linux version that brought
// it; it wraps errors.ErrUnsupported. Call it with the capabilities to
// load programs: without them every probe fails.
func (k *Kernel) Probe() error {
	var missing []string
	for _, c := range []struct {
		probe func() error
		what  string
	}{
		{func() error { return features.HaveProgramType(ebpf.SockOps) }, "sock_ops programs (Linux 4.13)"},
		{func() error { return features.HaveProgramType(ebpf.CGroupSockopt) }, "cgroup setsockopt programs (Linux 5.3)"},
		{func() error { return features.HaveMapType(ebpf.SkStorage) }, "socket-local storage maps (Linux 5.2)"},
		{func() error { return features.HaveProgramHelper(ebpf.SockOps, asm.FnSetsockopt) }, "bpf_setsockopt in sock_ops programs (Linux 4.13)"},
		{func() error { return features.HaveProgramHelper(ebpf.SockOps, asm.FnSkStorageGet) }, "bpf_sk_storage_get in sock_ops programs (Linux 5.3)"},
		{func() error { return features.HaveProgramHelper(ebpf.SockOps, asm.FnSkcToTcpSock) }, "bpf_skc_to_tcp_sock in sock_ops programs (Linux 5.10)"},
		{func() error { return features.HaveProgramHelper(ebpf.CGroupSockopt, asm.FnSkStorageGet) }, "bpf_sk_storage_get in cgroup sockopt programs (Linux 5.3)"},
		// features cannot probe tracing programs, which need a target:
		// the iterator's target is looked up in the kernel's BTF, and its
		// load says the rest.
		{k.haveTCPIter, "TCP iterators (Linux 5.9)"},
	} {
		err := c.probe()
		switch {
		case errors.Is(err, ebpf.ErrNotSupported):
			missing = append(missing, c.what)
		case err != nil:
			return fmt.Errorf("bpfsock: probing the kernel for %s: %w", c.what, err)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("bpfsock: this kernel lacks %s: %w", strings.Join(missing, ", "), errors.ErrUnsupported)
	}
	return nil
}

// ProbeIter checks that the kernel has what the readers' TCP iterators
// use: TCP iterators (Linux 5.9, found in its BTF) and the helpers the
// programs call, which loading them tells. It wraps
// errors.ErrUnsupported. Whether bpf_getsockopt reads the keepalive
// options (Linux 6.1) is not probed: a socket whose options it could not
// read says so ([Socket.Errs], [SetResult.BeforeErrs]).
func (k *Kernel) ProbeIter() error {
	if !k.tcpIter {
		return fmt.Errorf("bpfsock: this kernel lacks TCP iterators (Linux 5.9): %w", errors.ErrUnsupported)
	}
	return nil
}

// haveTCPIter says whether the kernel's BTF has the TCP iterator's
// target.
func (k *Kernel) haveTCPIter() error {
	if !k.tcpIter {
		return ebpf.ErrNotSupported
	}
	return nil
}

// explainLoad adds to an error from loading or attaching a program what
// is likely behind it: a locked-down kernel refuses programs that read
// kernel memory.
func explainLoad(err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		for _, line := range verr.Log {
			if strings.Contains(line, "bpf_setsockopt") && (strings.Contains(line, "cannot use helper") || strings.Contains(line, "unknown func")) {
				return fmt.Errorf("%w: this kernel's TCP iterator cannot call bpf_setsockopt (Linux 5.15 or later can)", err)
			}
		}
	}
	if !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EACCES) {
		return err
	}
	if mode := Lockdown(); mode == "confidentiality" {
		return fmt.Errorf("%w: the kernel is locked down (%s): it refuses BPF programs that read kernel memory, as the policy's iterator does", err, mode)
	}
	return err
}
