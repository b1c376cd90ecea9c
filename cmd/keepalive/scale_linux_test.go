package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/metrics"
)

// scaleEnv overrides the number of pairs of the host with 100,000
// connections (testproc.ScalePairs).
const scaleEnv = "KEEPALIVE_SCALE_PAIRS"

// scaleConfig is the Config of the dialed ends; the accepted ends have
// keepalive off. Its Idle outlasts any run: sockets opened within seconds
// of each other would otherwise probe within seconds of each other, a
// burst that overflows loopback's backlog and aborts connections.
var scaleConfig = keepalive.Config{Idle: time.Hour, Interval: 10 * time.Second, Count: 5}

// startScale starts helpers holding the pairs scaleEnv asks for
// (testproc.StartScale), and returns their pids.
func startScale(t testing.TB) map[int]bool {
	t.Helper()
	pairs, err := testproc.Pairs(scaleEnv)
	require.NoError(t, err)
	held, err := testproc.StartScale(t, []string{helperEnv + "=hold"}, "ka-scale", pairs, scaleConfig.String())
	require.NoError(t, err)
	pids := map[int]bool{}
	for _, h := range held {
		pids[h.PID] = true
	}
	return pids
}

// prometheusAccept is what Prometheus 2.42 asks a target for.
const prometheusAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

// scrape asks h for /metrics as Prometheus does, and returns the body's
// size, compressed as sent.
func scrape(t testing.TB, h http.Handler) int {
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept", prometheusAccept)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	return rec.Body.Len()
}

// BenchmarkScrape compares a scrape of keepalive exporter on a host with
// 100,000 connections (KEEPALIVE_SCALE_PAIRS pairs, 50,000 by default),
// aggregates only, through the BPF iterator and through pidfd_getfd, and
// per connection, with ss -tnoip on the same host in the same run. Each
// reports its CPU time (user + system) per run as cpu-ms/op; the scrapes
// the size of their answer, gzipped as Prometheus asks, as bytes/scrape,
// and ss the connections it listed as conns/op.
//
//	go test -run XXX -bench BenchmarkScrape -benchtime 5x .
func BenchmarkScrape(b *testing.B) {
	startScale(b)

	b.Run("ss -tnoip", testproc.BenchmarkSS)
	for _, bm := range []struct {
		name          string
		method        audit.Method
		perConnection bool
	}{
		{"scrape bpf", audit.MethodBPF, false},
		{"scrape pidfd", audit.MethodPidfd, false},
		{"scrape per-connection", audit.MethodAuto, true},
	} {
		b.Run(bm.name, func(b *testing.B) {
			h := newMetricsHandler(metrics.Options{
				Audit:         audit.Options{Criteria: audit.Criteria{IdleTimeout: 350 * time.Second, Detect: 2 * time.Minute}, Method: bm.method},
				PerConnection: bm.perConnection,
			}, slog.New(slog.DiscardHandler))
			var size int
			var before, after unix.Rusage
			unix.Getrusage(unix.RUSAGE_SELF, &before)
			for b.Loop() {
				size = scrape(b, h)
			}
			unix.Getrusage(unix.RUSAGE_SELF, &after)
			cpu := time.Duration(after.Utime.Nano() - before.Utime.Nano() + after.Stime.Nano() - before.Stime.Nano())
			b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
