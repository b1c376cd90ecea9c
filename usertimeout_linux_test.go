package keepalive_test

import (
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestUnacknowledgedData shows that keepalive does not notice a vanished
// peer while sent data is unacknowledged, and that UserTimeout does. A
// writer keeps writing to a peer that has vanished: with UserTimeout 2s the
// write fails with ETIMEDOUT no sooner than 2s and within 2.5s; with
// keepalive alone (Idle 1s, Interval 1s, Count 2: 3s when idle) the
// connection is still open after 9s, retransmitting, with no keepalive
// probe sent. Both ends are covered; like TestVanishedPeer, the cases wait
// at the same time.
//
// Linux counts UserTimeout from the first retransmission on a
// retransmission timeout (net/ipv4/tcp_output.c, tcp_retransmit_skb sets
// retrans_stamp), not from the first send; on loopback that comes about
// 200ms (the minimum RTO) after the data went out, so the write fails
// about 2.2s after it began, well inside the limit.
func TestUnacknowledgedData(t *testing.T) {
	t.Parallel()
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	keep := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2}
	hold := 3 * keep.DetectionTime(sys)
	withUser := keep
	withUser.UserTimeout = 2 * time.Second

	type run struct {
		name       string
		c          keepalive.Config
		side       string
		configured net.Conn
		done       <-chan detection
	}
	var runs []run
	for _, c := range []keepalive.Config{withUser, keep} {
		for _, side := range sides {
			configured, peer := configuredPair(t, c, side)
			lastExchange(t, configured, peer)
			blackhole(t, peer)
			deadline := hold
			if c.UserTimeout != 0 {
				// Far past the limit, so that a connection that is never
				// declared dead fails the test instead of hanging it.
				deadline = 3 * c.UserTimeout
			}
			start := time.Now()
			require.NoError(t, configured.SetWriteDeadline(start.Add(deadline)))
			name := "user-timeout=" + c.UserTimeout.String() + "/" + side
			if c.UserTimeout == 0 {
				name = "no-user-timeout/" + side
			}
			runs = append(runs, run{name, c, side, configured, writeUntilError(configured, start)})
		}
	}

	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			d := <-r.done
			info := tcpInfo(t, r.configured)
			t.Logf("unacknowledged: config=%s side=%s write failed after %.3fs: %v; retransmissions %d, keepalive probes %d, unacknowledged segments %d",
				detectConfig(r.c), r.side, d.measured.Seconds(), d.err, info.Total_retrans, info.Probes, info.Unacked)
			if r.c.UserTimeout != 0 {
				limit := r.c.UserTimeout * 125 / 100
				t.Logf("ratio to UserTimeout %v: %.3f", r.c.UserTimeout, float64(d.measured)/float64(r.c.UserTimeout))
				assert.ErrorIs(t, d.err, syscall.ETIMEDOUT)
				assert.GreaterOrEqual(t, d.measured, r.c.UserTimeout, "failed %v before UserTimeout", r.c.UserTimeout-d.measured)
				assert.LessOrEqual(t, d.measured, limit, "failed %v after the limit %v", d.measured-limit, limit)
				return
			}
			// Still open at the write deadline, three times the idle
			// bound: retransmitting, and no probe was ever sent.
			assert.ErrorIs(t, d.err, os.ErrDeadlineExceeded)
			assert.GreaterOrEqual(t, d.measured, hold, "write ended early")
			assert.Equal(t, uint8(tcpEstablished), info.State, "state")
			assert.NotZero(t, info.Unacked, "unacknowledged segments")
			assert.NotZero(t, info.Total_retrans, "retransmissions")
			assert.Zero(t, info.Probes, "keepalive probes")
		})
	}
}

// writeUntilError writes to conn in a goroutine until a write fails, and
// delivers the error and the time it took since start.
func writeUntilError(conn net.Conn, start time.Time) <-chan detection {
	done := make(chan detection, 1)
	go func() {
		b := make([]byte, 64<<10)
		for {
			if _, err := conn.Write(b); err != nil {
				done <- detection{err, time.Since(start)}
				return
			}
		}
	}()
	return done
}
