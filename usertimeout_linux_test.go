package keepalive_test

import (
	"io"
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
	hold := 3 * detectionTime(t, keep, sys)
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

// TestStalledReader shows the cost of a user timeout: a peer that is alive
// but has stopped reading is cut off once its receive window has been full
// for longer than UserTimeout, since the data waiting to be sent stays
// unacknowledged although every segment the writer sends is answered.
// Without a user timeout the same connection
// stays open, and the peer reads every byte when it resumes. The writer's
// keepalive (idle 1s, interval 1s, count 3) changes nothing: probes are not
// sent while data is queued.
func TestStalledReader(t *testing.T) {
	keep := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 3}
	withUser := keep
	withUser.UserTimeout = 2 * time.Second
	const hold = 10 * time.Second
	for _, c := range []keepalive.Config{withUser, keep} {
		name := "user-timeout=2s"
		if c.UserTimeout == 0 {
			name = "no-user-timeout"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var plain net.ListenConfig
			plain.SetMultipathTCP(false)
			ln := listen(t, &keepalive.ListenConfig{NetListenConfig: &plain})
			d := &keepalive.Dialer{Config: c}
			writer, reader := pair(t, ln, d.DialContext)

			// Write until the reader's window and the writer's buffer are
			// full; the last write that returned marks when they filled.
			start := time.Now()
			require.NoError(t, writer.SetWriteDeadline(start.Add(hold)))
			var written int
			var filled time.Time
			b := make([]byte, 4096)
			var werr error
			for {
				n, err := writer.Write(b)
				written += n
				if err != nil {
					werr = err
					break
				}
				filled = time.Now()
			}
			waited := time.Since(filled)
			info := tcpInfo(t, writer)
			t.Logf("stalled reader: %s: %d bytes written; write failed %.3fs after the buffers filled: %v; probes %d, retransmissions %d",
				name, written, waited.Seconds(), werr, info.Probes, info.Total_retrans)
			if c.UserTimeout != 0 {
				assert.ErrorIs(t, werr, syscall.ETIMEDOUT, "a live peer that stopped reading is cut off")
				assert.Less(t, waited, hold/2, "cut off long after the user timeout")
				t.Logf("ratio to UserTimeout %v: %.3f", c.UserTimeout, float64(waited)/float64(c.UserTimeout))
				return
			}
			assert.ErrorIs(t, werr, os.ErrDeadlineExceeded, "still writing at the deadline")
			assert.Equal(t, uint8(tcpEstablished), info.State, "state")
			// The peer was alive all along: it reads every byte.
			require.NoError(t, reader.SetReadDeadline(time.Now().Add(10*time.Second)))
			got, err := io.CopyN(io.Discard, reader, int64(written))
			assert.NoError(t, err)
			assert.Equal(t, int64(written), got, "bytes the reader read after resuming")
		})
	}
}
