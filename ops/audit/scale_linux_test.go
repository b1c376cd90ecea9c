package audit_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// scaleEnv overrides the number of pairs of the host with 100,000
// connections (testproc.ScalePairs).
const scaleEnv = "AUDIT_SCALE_PAIRS"

// scaleConfig is the Config of the dialed ends; the accepted ends have
// keepalive off. Its Idle outlasts the test: 50,000 sockets opened within
// seconds of each other probe within seconds of each other too, and such a
// burst overflows loopback's backlog (net.core.netdev_max_backlog, 1000),
// whose drops abort connections whose probes all go unanswered.
var scaleConfig = keepalive.Config{Idle: 300 * time.Second, Interval: 10 * time.Second, Count: 5}

// scrapeTimeout is Prometheus' default scrape timeout, within which an
// audit of such a host must finish for the exporter to answer.
const scrapeTimeout = 10 * time.Second

// startScale starts helpers holding the pairs scaleEnv asks for
// (testproc.StartScale), and returns the number of pairs and the helpers'
// pids.
func startScale(t testing.TB) (pairs int, pids map[int]bool) {
	t.Helper()
	pairs, err := testproc.Pairs(scaleEnv)
	require.NoError(t, err)
	held, err := testproc.StartScale(t, []string{helperEnv + "=hold"}, "", pairs, scaleConfig.String())
	require.NoError(t, err)
	pids = map[int]bool{}
	for _, h := range held {
		pids[h.PID] = true
	}
	return pairs, pids
}

// TestAuditScale audits a host with 100,000 connections: every one the
// helpers hold is reported with its process and the values read from its
// socket, within Prometheus' default scrape timeout (without the race
// detector), with values read and without.
func TestAuditScale(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 100,000 connections")
	}
	pairs, helpers := startScale(t)
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
