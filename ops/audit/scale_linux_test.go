package audit_test

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// A host with 100,000 connections: 50,000 pairs on loopback, both ends
// held by processes the test starts. One process may hold fewer
// descriptors than that (RLIMIT_NOFILE, which only CAP_SYS_RESOURCE
// raises past its hard limit), so the pairs are spread over helpers of
// at most pairsPerHelper each.
const (
	scalePairs     = 50000
	pairsPerHelper = 6250
	scaleEnv       = "AUDIT_SCALE_PAIRS" // overrides scalePairs
)

// scaleConfig is the Config of the dialed ends; the accepted ends have
// keepalive off. Its Idle outlasts the test: 50,000 sockets opened within
// seconds of each other probe within seconds of each other too, and such a
// burst overflows loopback's backlog (net.core.netdev_max_backlog, 1000),
// whose drops abort connections whose probes all go unanswered.
var scaleConfig = keepalive.Config{Idle: 300 * time.Second, Interval: 10 * time.Second, Count: 5}

// scrapeTimeout is Prometheus' default scrape timeout, within which an
// audit of such a host must finish for the exporter to answer.
const scrapeTimeout = 10 * time.Second

// startScale starts helpers holding pairs connections in all.
func startScale(t testing.TB, pairs int) []*helper {
	t.Helper()
	var lim unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
	per := min(pairsPerHelper, int(lim.Max-64)/2)
	require.Positive(t, per, "RLIMIT_NOFILE %d", lim.Max)
	n := (pairs + per - 1) / per
	hs := make([]*helper, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []string
	start := time.Now()
	for i := range n {
		k := min(per, pairs-i*per)
		wg.Go(func() {
			h, err := tryStartHold(t, k, scaleConfig.String(), false, nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err.Error())
			}
			hs[i] = h
		})
	}
	wg.Wait()
	require.Empty(t, errs)
	t.Logf("%d helpers hold %d connections (%d pairs); set up in %v", n, 2*pairs, pairs, time.Since(start).Round(time.Millisecond))
	return hs
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

// TestAuditScale audits a host with 100,000 connections: every one the
// helpers hold is reported with its process and the values read from its
// socket, within Prometheus' default scrape timeout (without the race
// detector), with values read and without.
func TestAuditScale(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 100,000 connections")
	}
	pairs := scaleFromEnv(t)
	hs := startScale(t, pairs)
	helpers := map[int]bool{}
	for _, h := range hs {
		helpers[h.PID] = true
	}
	for _, tt := range []struct {
		name       string
		kernelOnly bool
	}{{"values read", false}, {"kernel only", true}} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			rep, err := audit.Audit(context.Background(), audit.Options{KernelOnly: tt.kernelOnly, Criteria: audit.Criteria{IdleTimeout: 350 * time.Second}})
			elapsed := time.Since(start)
			require.NoError(t, err)
			t.Logf("audit of %d connections (%d of them the helpers') took %v", len(rep.Conns), 2*pairs, elapsed.Round(time.Millisecond))
			if raceEnabled {
				t.Logf("not checked against %v: the race detector is on (BenchmarkAudit measures a production build)", scrapeTimeout)
			} else {
				assert.Less(t, elapsed, scrapeTimeout)
			}
			var on, off, wrong int
			for _, c := range rep.Conns {
				if !helpers[c.PID] {
					continue
				}
				switch {
				case c.Enabled && !tt.kernelOnly && c.Source == audit.SourceSocket && c.Config == scaleConfig && c.Verdict == audit.OK:
					on++
				case c.Enabled && tt.kernelOnly && c.Source == audit.SourceKernel && c.Verdict == audit.Unknown:
					// Keepalive on, values unknown: the timer, armed for 300s,
					// fires before the idle timeout.
					on++
				case !c.Enabled && c.Verdict == audit.Off:
					off++
				default:
					if wrong++; wrong < 5 {
						t.Errorf("unexpected: %+v", c)
					}
				}
			}
			assert.Equal(t, pairs, on, "dialed ends: keepalive on, with the helpers' Config")
			assert.Equal(t, pairs, off, "accepted ends: keepalive off")
		})
	}
}
