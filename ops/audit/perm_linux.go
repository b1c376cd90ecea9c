package audit

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// yamaScope is Yama's setting, absent when the kernel has no Yama.
const yamaScope = "/proc/sys/kernel/yama/ptrace_scope"

// newPermissionError explains why op on process pid was refused.
func newPermissionError(pid int, op string, err error) *PermissionError {
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)) // readable by all
	return &PermissionError{PID: pid, Command: strings.TrimSuffix(string(comm), "\n"), Op: op, Err: err, Why: whyNoAccess(pid, op)}
}

// whyNoAccess says, in words, the ptrace access op on pid needs, who the
// caller and the process are, and what Yama adds.
func whyNoAccess(pid int, op string) string {
	var b strings.Builder
	mode := "ptrace read access (PTRACE_MODE_READ_FSCREDS)"
	if op == "pidfd_getfd" {
		mode = "ptrace attach access (PTRACE_MODE_ATTACH_REALCREDS)"
	}
	fmt.Fprintf(&b, "%s needs %s to the process: run as the user that owns it", op, mode)
	if fi, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			fmt.Fprintf(&b, " (uid %d)", st.Uid)
		}
	}
	b.WriteString(" (the process must then also be dumpable: one that changed its user or called prctl(PR_SET_DUMPABLE, 0) is not), or with CAP_SYS_PTRACE")
	fmt.Fprintf(&b, "; this process runs as uid %d", os.Getuid())
	if has, ok := hasCapability(unix.CAP_SYS_PTRACE); ok && has {
		b.WriteString(" with CAP_SYS_PTRACE")
	} else if ok {
		b.WriteString(" without CAP_SYS_PTRACE")
	}
	if s, err := os.ReadFile(yamaScope); err == nil {
		switch strings.TrimSpace(string(s)) {
		case "1":
			b.WriteString("; Yama's kernel.yama.ptrace_scope is 1 (restricted): only an ancestor of the process, a process it named with PR_SET_PTRACER, or one with CAP_SYS_PTRACE may attach")
		case "2":
			b.WriteString("; Yama's kernel.yama.ptrace_scope is 2 (admin-only): only a process with CAP_SYS_PTRACE may attach")
		case "3":
			b.WriteString("; Yama's kernel.yama.ptrace_scope is 3 (no attach): no process may attach, not even root, until reboot; only what the kernel reports without reading the socket is available")
		}
	}
	return b.String()
}

// hasCapability reports whether this process has capability c in its
// effective set; ok is false when that cannot be read.
func hasCapability(c int) (has, ok bool) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return false, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, found := strings.CutPrefix(sc.Text(), "CapEff:")
		if !found {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, false
		}
		return n&(1<<c) != 0, true
	}
	return false, false
}
