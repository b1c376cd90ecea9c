package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// BenchmarkAudit compares, on a host with 100,000 connections
// (AUDIT_SCALE_PAIRS pairs, 50,000 by default) and in the same run, a full
// audit through the BPF iterator, through pidfd_getfd, and without
// reading values, with ss -tnoip. Each reports its CPU time (user +
// system) per run as cpu-ms/op, the connections it listed as conns/op,
// and, where strace is installed, the system calls one run makes, counted
// by strace -f -c on a process of its own, as syscalls/op (a count, which
// strace's own slowness does not change).
//
//	go test -run XXX -bench BenchmarkAudit -benchtime 5x .
func BenchmarkAudit(b *testing.B) {
	startScale(b)

	b.Run("ss -tnoip", func(b *testing.B) {
		testproc.BenchmarkSS(b)
		if n, ok := syscalls(b, "ss", "-tnoip"); ok {
			b.ReportMetric(float64(n), "syscalls/op")
		}
	})
	for _, bm := range []struct {
		name string
		o    audit.Options
	}{
		{"audit kernel-only", audit.Options{KernelOnly: true}},
		{"audit bpf", audit.Options{Method: audit.MethodBPF}},
		{"audit pidfd", audit.Options{Method: audit.MethodPidfd}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			var conns int
			var before, after unix.Rusage
			unix.Getrusage(unix.RUSAGE_SELF, &before)
			for b.Loop() {
				rep, err := audit.Audit(context.Background(), bm.o)
				require.NoError(b, err)
				conns = len(rep.Conns)
			}
			unix.Getrusage(unix.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() - before.Utime.Nano() + after.Stime.Nano() - before.Stime.Nano())
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(conns), "conns/op")
			if n, ok := auditSyscalls(b, bm.o); ok {
				b.ReportMetric(float64(n), "syscalls/op")
			}
		})
	}
}

// auditSyscalls counts the system calls of one audit with o's method
// and KernelOnly, in an auditor of its own.
func auditSyscalls(b *testing.B, o audit.Options) (int, bool) {
	b.Helper()
	bin, err := testproc.Binary(false)
	require.NoError(b, err)
	spec, err := json.Marshal(auditorSpec{Count: true, Method: o.Method, KernelOnly: o.KernelOnly})
	require.NoError(b, err)
	b.Setenv(helperEnv, "auditor")
	b.Setenv(auditorEnv, string(spec))
	return syscalls(b, bin)
}

// syscalls runs argv under strace -f -c and returns the system calls it
// and its threads made; ok is false when strace is not installed.
func syscalls(b *testing.B, argv ...string) (n int, ok bool) {
	b.Helper()
	strace, err := exec.LookPath("strace")
	if err != nil {
		b.Logf("strace (Debian package strace) is not installed: no count of system calls")
		return 0, false
	}
	out := filepath.Join(b.TempDir(), "strace")
	cmd := exec.Command(strace, append([]string{"-f", "-c", "-o", out}, argv...)...)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = nil, &stderr
	require.NoError(b, cmd.Run(), "%s", stderr.String())
	f, err := os.Open(out)
	require.NoError(b, err)
	defer f.Close()
	// % time     seconds  usecs/call     calls    errors syscall
	// 100.00    0.123456           1    123456       123 total
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && fields[len(fields)-1] == "total" {
			n, err := strconv.Atoi(fields[3])
			require.NoError(b, err, "strace said %q", sc.Text())
			return n, true
		}
	}
	b.Fatalf("strace -c wrote no total")
	return 0, false
}
