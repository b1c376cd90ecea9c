package main

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/metrics"
)

// A host with 100,000 connections: 50,000 pairs on loopback, both ends
// held by helpers the test starts, at most pairsPerHelper each, since one
// process may hold at most RLIMIT_NOFILE descriptors.
const (
	scalePairs     = 50000
	pairsPerHelper = 6250
	scaleEnv       = "KEEPALIVE_SCALE_PAIRS" // overrides scalePairs
)

// scaleConfig is the Config of the dialed ends; the accepted ends have
// keepalive off. Its Idle outlasts any run: sockets opened within seconds
// of each other would otherwise probe within seconds of each other, a
// burst that overflows loopback's backlog and aborts connections.
var scaleConfig = keepalive.Config{Idle: time.Hour, Interval: 10 * time.Second, Count: 5}

// startScale starts helpers holding pairs connections in all, and returns
// their pids.
func startScale(t testing.TB, pairs int) map[int]bool {
	t.Helper()
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	per := min(pairsPerHelper, int(lim.Max-64)/2)
	require.Positive(t, per, "RLIMIT_NOFILE %d", lim.Max)
	n := (pairs + per - 1) / per
	pids := map[int]bool{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	start := time.Now()
	for i := range n {
		k := min(per, pairs-i*per)
		wg.Go(func() {
			h, err := tryStartHold(t, "ka-scale", strconv.Itoa(k), scaleConfig.String())
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			pids[h.PID] = true
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	t.Logf("%d helpers hold %d connections (%d pairs); set up in %v", n, 2*pairs, pairs, time.Since(start).Round(time.Millisecond))
	return pids
}

func scaleFromEnv(t testing.TB) int {
	t.Helper()
	pairs := scalePairs
	if s := os.Getenv(scaleEnv); s != "" {
		var err error
		pairs, err = strconv.Atoi(s)
		require.NoError(t, err, scaleEnv)
	}
	return pairs
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
// aggregates only and per connection, with ss -tnoip on the same host in
// the same run. Each reports its CPU time (user + system) per run as
// cpu-ms/op; the scrapes the size of their answer, gzipped as Prometheus
// asks, as bytes/scrape, and ss the connections it listed as conns/op.
//
//	go test -run XXX -bench BenchmarkScrape -benchtime 5x .
func BenchmarkScrape(b *testing.B) {
	startScale(b, scaleFromEnv(b))

	b.Run("ss -tnoip", func(b *testing.B) {
		if _, err := exec.LookPath("ss"); err != nil {
			b.Skip("ss (Debian package iproute2) is not installed")
		}
		var cpu time.Duration
		var lines int
		for b.Loop() {
			var out bytes.Buffer
			cmd := exec.Command("ss", "-tnoip")
			cmd.Stdout = &out
			require.NoError(b, cmd.Run())
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			lines = bytes.Count(out.Bytes(), []byte("\n")) / 2 // -i writes a second line per socket
		}
		b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
		b.ReportMetric(float64(lines), "conns/op")
	})
	for _, bm := range []struct {
		name          string
		perConnection bool
	}{{"scrape", false}, {"scrape per-connection", true}} {
		b.Run(bm.name, func(b *testing.B) {
			h := newMetricsHandler(metrics.Options{
				Audit:         audit.Options{Criteria: audit.Criteria{IdleTimeout: 350 * time.Second, Detect: 2 * time.Minute}},
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
