package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// BenchmarkAudit compares a full audit of a host with 100,000 connections
// (AUDIT_SCALE_PAIRS pairs, 50,000 by default) with ss -tnoip on the same
// host in the same run. Each reports its CPU time (user + system) per run
// as cpu-ms/op, and the connections it listed as conns/op.
func BenchmarkAudit(b *testing.B) {
	startScale(b)

	b.Run("ss -tnoip", testproc.BenchmarkSS)
	for _, bm := range []struct {
		name string
		o    audit.Options
	}{
		{"audit kernel-only", audit.Options{KernelOnly: true}},
		{"audit", audit.Options{}},
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
		})
	}
}
