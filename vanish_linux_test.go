package keepalive_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestVanishedPeer shows that an idle connection whose peer vanishes (no
// FIN, no RST, no more ACKs) fails a blocked Read with ETIMEDOUT no sooner
// than the detection bound and no later than bound*1.15 + 200ms, counted
// from the last byte the configured end received, on both a dialed and an
// accepted connection. Each case logs a "detect:" line.
//
// Every case is set up first and then waits at the same time as the
// others: the cases spend their time waiting, and t.Parallel would run
// them only -parallel (GOMAXPROCS) at a time.
func TestVanishedPeer(t *testing.T) {
	t.Parallel()
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	tests := []struct {
		c     keepalive.Config
		bound time.Duration
	}{
		// Idle + Interval*Count.
		{keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2}, 3 * time.Second},
		{keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3}, 5 * time.Second},
		// With a UserTimeout the kernel ignores Count (9 would mean 10s):
		// the probe timer at Idle+Interval finds 2s passed, short of 2.5s,
		// and sends a second probe; the one at Idle+2*Interval finds 3s
		// passed and drops the connection.
		{keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 9, UserTimeout: 2500 * time.Millisecond}, 3 * time.Second},
	}
	type run struct {
		c     keepalive.Config
		side  string
		bound time.Duration
		done  <-chan detection
	}
	var runs []run
	for _, tt := range tests {
		assert.Equal(t, tt.bound, detectionTime(t, tt.c, sys), "DetectionTime of %s", detectConfig(tt.c))
		for _, side := range sides {
			configured, peer := configuredPair(t, tt.c, side)
			last := lastExchange(t, configured, peer)
			blackhole(t, peer)
			// A deadline well past the limit, so that a connection
			// that is never declared dead fails the test instead of
			// hanging it.
			require.NoError(t, configured.SetReadDeadline(last.Add(3*tt.bound)))
			runs = append(runs, run{tt.c, side, tt.bound, readUntilError(configured, last)})
		}
	}
	for _, r := range runs {
		t.Run(detectConfig(r.c)+"/"+r.side, func(t *testing.T) {
			d := <-r.done
			t.Logf("detect: config=%s side=%s bound=%v measured=%.3fs ratio=%.3f",
				detectConfig(r.c), r.side, r.bound, d.measured.Seconds(), float64(d.measured)/float64(r.bound))
			limit := r.bound*115/100 + 200*time.Millisecond
			assert.ErrorIs(t, d.err, syscall.ETIMEDOUT)
			assert.GreaterOrEqual(t, d.measured, r.bound, "detected %v before the bound %v", r.bound-d.measured, r.bound)
			assert.LessOrEqual(t, d.measured, limit, "detected %v after the limit %v (bound %v)", d.measured-limit, limit, r.bound)
		})
	}
}

// detection is how a blocked call on a connection ended, and when.
type detection struct {
	err error
	// measured is the time from the connection's last receipt to err.
	measured time.Duration
}

// readUntilError reads from conn in a goroutine until the read fails, and
// delivers the error and the time it took since last.
func readUntilError(conn net.Conn, last time.Time) <-chan detection {
	done := make(chan detection, 1)
	go func() {
		b := make([]byte, 1)
		for {
			if _, err := conn.Read(b); err != nil {
				done <- detection{err, time.Since(last)}
				return
			}
		}
	}()
	return done
}
