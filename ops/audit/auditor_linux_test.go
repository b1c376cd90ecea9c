package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/cgrouptest"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// The "auditor" helper runs audit and apply in a process of its own, with
// fewer privileges than the test: its capabilities dropped (setpriv), as
// another user, or with pidfd_open, pidfd_getfd and ptrace refused by a
// seccomp filter, which proves that what it reads and changes it reaches
// without them. It prints what it saw as one auditorResult.

// auditorEnv carries the auditor's auditorSpec, as JSON.
const auditorEnv = "AUDIT_TEST_AUDITOR"

// auditorSpec says what the auditor does.
type auditorSpec struct {
	// Seccomp refuses pidfd_open, pidfd_getfd and ptrace (EPERM) to every
	// thread of the auditor before anything else.
	Seccomp bool
	// Method is the method of every audit and apply.
	Method audit.Method
	// PIDs are the processes whose connections a host-wide audit reports;
	// none: no host-wide audit.
	PIDs []int
	// AuditPID, if not zero, is audited alone too (Filter.PID).
	AuditPID int
	// ApplyPIDs are the processes apply sets Change on, each in turn.
	ApplyPIDs []int
	Change    string // the Config's text; every field named
	// Count audits every process once and reports how many connections
	// it listed, and nothing else: the benchmark's run under strace.
	// KernelOnly reads no values then.
	Count, KernelOnly bool
	// BPFFS is the audits' Options.BPFFS.
	BPFFS string
}

// auditedConn is a connection as the auditor reports it.
type auditedConn struct {
	PID, FD int
	Inode   uint32
	Netns   uint64
	Method  string
	Source  string
	Values  sockopts.Values
	Err     string
}

// appliedConn is what apply did to one socket, as the auditor reports it.
type appliedConn struct {
	PID, FD  int
	Inode    uint32
	Method   string
	After    sockopts.Values
	Err      string
	BPFError string
}

type auditorResult struct {
	UID int
	// PidfdOpen is the error of the auditor's own pidfd_open of its
	// first target: EPERM under the seccomp filter.
	PidfdOpen string

	AuditErr   string
	BPFError   string
	Conns      []auditedConn
	Namespaces []uint64

	PIDAuditErr string
	PIDConns    []auditedConn

	ApplyErrs    []string // one per ApplyPIDs, "" for none
	ApplyPerm    []bool   // errors.As *audit.PermissionError
	ApplyPermOps []string
	Applied      []appliedConn

	Counted int // with Count
}

func reported(cs []audit.Conn, pids []int) []auditedConn {
	var out []auditedConn
	for _, c := range cs {
		for _, pid := range pids {
			if c.PID == pid {
				a := auditedConn{PID: c.PID, FD: c.FD, Inode: c.Inode, Netns: c.Netns, Source: c.Source.String(), Values: valuesOf(c)}
				if c.Source == audit.SourceSocket {
					a.Method = c.Method.String()
				}
				if c.Err != nil {
					a.Err = c.Err.Error()
				}
				out = append(out, a)
			}
		}
	}
	return out
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// auditor is the helper's body.
func auditor() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "auditor:", err)
		return 2
	}
	var spec auditorSpec
	if err := json.Unmarshal([]byte(os.Getenv(auditorEnv)), &spec); err != nil {
		return fail(err)
	}
	if spec.Seccomp {
		if err := denyPtrace(); err != nil {
			return fail(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := auditorResult{UID: os.Getuid()}
	if spec.Count {
		rep, err := audit.Audit(ctx, audit.Options{Method: spec.Method, KernelOnly: spec.KernelOnly})
		if err != nil {
			return fail(err)
		}
		r.Counted = len(rep.Conns)
		json.NewEncoder(os.Stdout).Encode(r)
		return 0
	}
	targets := append(append([]int{spec.AuditPID}, spec.PIDs...), spec.ApplyPIDs...)
	for _, pid := range targets {
		if pid != 0 {
			fd, err := unix.PidfdOpen(pid, 0)
			if err == nil {
				unix.Close(fd)
			}
			r.PidfdOpen = errText(err)
			break
		}
	}
	if len(spec.PIDs) > 0 {
		rep, err := audit.Audit(ctx, audit.Options{Method: spec.Method, BPFFS: spec.BPFFS})
		r.AuditErr = errText(err)
		if err == nil {
			r.BPFError = errText(rep.BPFError)
			r.Conns = reported(rep.Conns, spec.PIDs)
			for _, ns := range rep.Namespaces {
				if ns.Err == nil {
					r.Namespaces = append(r.Namespaces, ns.Inode)
				}
			}
		}
	}
	if spec.AuditPID != 0 {
		rep, err := audit.Audit(ctx, audit.Options{Method: spec.Method, BPFFS: spec.BPFFS, Filter: audit.Filter{PID: spec.AuditPID}})
		r.PIDAuditErr = errText(err)
		if err == nil {
			r.PIDConns = reported(rep.Conns, []int{spec.AuditPID})
			if r.BPFError == "" {
				r.BPFError = errText(rep.BPFError)
			}
		}
	}
	for _, pid := range spec.ApplyPIDs {
		c, err := keepalive.ParseConfig(spec.Change)
		if err != nil {
			return fail(err)
		}
		results, err := audit.Apply(ctx, pid, audit.Filter{}, audit.Change{Config: c, Fields: audit.AllFields, Method: spec.Method})
		r.ApplyErrs = append(r.ApplyErrs, errText(err))
		var perr *audit.PermissionError
		isPerm := errors.As(err, &perr)
		r.ApplyPerm = append(r.ApplyPerm, isPerm)
		op := ""
		if isPerm {
			op = perr.Op
		}
		r.ApplyPermOps = append(r.ApplyPermOps, op)
		for _, res := range results {
			a := appliedConn{PID: pid, FD: res.Before.FD, Inode: res.Before.Inode, Err: errText(res.Err), BPFError: errText(res.BPFError)}
			if res.Err == nil {
				a.Method, a.After = res.After.Method.String(), valuesOf(res.After)
			}
			r.Applied = append(r.Applied, a)
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// denyPtrace installs, on every thread of this process, a seccomp filter
// that refuses pidfd_open, pidfd_getfd and ptrace with EPERM.
func denyPtrace() error {
	var arch uint32
	switch runtime.GOARCH {
	case "amd64":
		arch = unix.AUDIT_ARCH_X86_64
	case "arm64":
		arch = unix.AUDIT_ARCH_AARCH64
	default:
		return fmt.Errorf("no seccomp filter for %s", runtime.GOARCH)
	}
	const (
		ldAbsW = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeqK   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		retK   = unix.BPF_RET | unix.BPF_K
	)
	filter := []unix.SockFilter{
		{Code: ldAbsW, K: 4}, // seccomp_data.arch
		{Code: jeqK, K: arch, Jt: 1},
		{Code: retK, K: unix.SECCOMP_RET_ALLOW}, // another ABI: not ours to judge
		{Code: ldAbsW, K: 0},                    // seccomp_data.nr
		{Code: jeqK, K: unix.SYS_PIDFD_OPEN, Jt: 3},
		{Code: jeqK, K: unix.SYS_PIDFD_GETFD, Jt: 2},
		{Code: jeqK, K: unix.SYS_PTRACE, Jt: 1},
		{Code: retK, K: unix.SECCOMP_RET_ALLOW},
		{Code: retK, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_NO_NEW_PRIVS", err)
	}
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&prog))); e != 0 {
		return os.NewSyscallError("seccomp", e)
	}
	runtime.KeepAlive(filter)
	return nil
}

// runAuditor runs the auditor with spec, under setpriv with args (such as
// "--bounding-set=-bpf") when args is not empty, and returns what it saw.
func runAuditor(t *testing.T, spec auditorSpec, setpriv ...string) auditorResult {
	t.Helper()
	bin, err := testproc.Binary(true)
	require.NoError(t, err)
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	cmd := exec.Command(bin)
	if len(setpriv) > 0 {
		p, err := exec.LookPath("setpriv")
		if err != nil {
			cgrouptest.Skip(t, "dropping privileges needs setpriv (util-linux)")
		}
		cmd = exec.Command(p, append(setpriv, "--", bin)...)
	}
	cmd.Env = append(os.Environ(), helperEnv+"=auditor", auditorEnv+"="+string(b))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	require.NoError(t, err, "the auditor: %s", stderr.String())
	var r auditorResult
	require.NoError(t, json.Unmarshal(out, &r), "the auditor said %s", out)
	return r
}
