package keepalive_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/netlab"
)

// labTag marks the network namespaces of the firewall tests.
const labTag = "kafw"

// TestFirewallForgetsIdleFlow shows what the package is for. A stateful
// firewall forgets a flow that stays silent longer than its conntrack
// timeout and from then on drops the flow's packets: without keepalive,
// data written after the silence never reaches the server, and the client
// retransmits it unacknowledged. With keepalive probes more frequent than
// the firewall's timeout, on either end, the flow stays known and the same
// write is delivered and answered.
//
// Every case is set up first and then waits out the silence at the same
// time as the others, since t.Parallel would run them only -parallel
// (GOMAXPROCS) at a time.
func TestFirewallForgetsIdleFlow(t *testing.T) {
	t.Parallel()
	const conntrackTimeout = 3 * time.Second
	const silence = conntrackTimeout + 2*time.Second
	ka := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 3}
	tests := []struct {
		name         string
		dial, accept *keepalive.Config // nil: keepalive off on that end
		alive        bool
	}{
		{name: "keepalive off", alive: false},
		{name: "keepalive on dialed end", dial: &ka, alive: true},
		{name: "keepalive on accepted end", accept: &ka, alive: true},
	}
	type flow struct {
		lab              *netlab.Lab
		dialed, accepted net.Conn
		last             time.Time
	}
	flows := make([]flow, len(tests))
	for i, tt := range tests {
		lab := netlab.New(t, netlab.Options{ConntrackTimeout: conntrackTimeout, Tag: labTag})
		dialed, accepted := labPair(t, lab, tt.dial, tt.accept)
		last := lastExchange(t, dialed, accepted)
		flows[i] = flow{lab, dialed, accepted, last}
	}
	time.Sleep(time.Until(flows[len(flows)-1].last.Add(silence)))

	for i, tt := range tests {
		f := flows[i]
		t.Run(tt.name, func(t *testing.T) {
			quiet := time.Since(f.last).Round(time.Millisecond)
			dropped := f.lab.Dropped()
			_, err := f.dialed.Write([]byte("ping"))
			require.NoError(t, err)
			require.NoError(t, f.accepted.SetReadDeadline(time.Now().Add(1500*time.Millisecond)))
			buf := make([]byte, 4)
			_, err = io.ReadFull(f.accepted, buf)
			if !tt.alive {
				info := tcpInfo(t, f.dialed)
				lost := f.lab.Dropped() - dropped
				t.Logf("after %v of silence (conntrack timeout %v) the server received nothing in 1.5s; client: %d segments unacknowledged, %d retransmissions; firewall dropped %d packets",
					quiet, conntrackTimeout, info.Unacked, info.Total_retrans, lost)
				assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "the server must not receive data written after the silence")
				assert.NotZero(t, info.Unacked, "segments unacknowledged on the client")
				assert.NotZero(t, info.Total_retrans, "retransmissions by the client")
				assert.Greater(t, lost, uint64(info.Total_retrans), "packets the firewall dropped: the write and each retransmission")
				return
			}
			require.NoError(t, err, "the server must receive data written after the silence")
			assert.Equal(t, "ping", string(buf))
			_, err = f.accepted.Write([]byte("pong"))
			require.NoError(t, err)
			require.NoError(t, f.dialed.SetReadDeadline(time.Now().Add(1500*time.Millisecond)))
			_, err = io.ReadFull(f.dialed, buf)
			require.NoError(t, err, "the client must receive the answer")
			assert.Equal(t, "pong", string(buf))
			t.Logf("after %v of silence (conntrack timeout %v) the write was delivered and answered; firewall dropped %d packets",
				quiet, conntrackTimeout, f.lab.Dropped())
			assert.Zero(t, f.lab.Dropped(), "packets the firewall dropped")
		})
	}
}

// TestFirewallCutFlows has the firewall forget every flow at once, as a
// nightly clean-up does. The end with keepalive must fail its read with
// ETIMEDOUT no sooner than Config.DetectionTime and no later than that
// bound * 1.15 + 200ms, counted from the last byte it received; the end
// without keepalive must notice nothing over the same time. As in
// TestFirewallForgetsIdleFlow, the cases wait at the same time.
func TestFirewallCutFlows(t *testing.T) {
	t.Parallel()
	c := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2}
	// Every field is set, so the system defaults play no part.
	bound := detectionTime(t, c, keepalive.Config{})
	limit := bound*115/100 + 200*time.Millisecond
	type cut struct {
		lab               *netlab.Lab
		with, without     net.Conn
		last              time.Time
		dropped           uint64
		detected, noticed <-chan detection
	}
	cuts := make([]cut, len(sides))
	for i, side := range sides {
		lab := netlab.New(t, netlab.Options{Tag: labTag})
		var x cut
		x.lab = lab
		if side == "dialed" {
			x.with, x.without = labPair(t, lab, &c, nil)
		} else {
			x.without, x.with = labPair(t, lab, nil, &c)
		}
		x.last = lastExchange(t, x.with, x.without)
		x.dropped = lab.Dropped()
		lab.CutFlows()
		// The end with keepalive gets a deadline well past the limit, so
		// that one never declared dead fails the test instead of hanging
		// it; the end without keepalive is watched until the limit.
		require.NoError(t, x.with.SetReadDeadline(x.last.Add(3*bound)))
		require.NoError(t, x.without.SetReadDeadline(x.last.Add(limit)))
		x.detected = readUntilError(x.with, x.last)
		x.noticed = readUntilError(x.without, x.last)
		cuts[i] = x
	}
	for i, side := range sides {
		x := cuts[i]
		t.Run("keepalive on "+side+" end", func(t *testing.T) {
			d := <-x.detected
			t.Logf("detect: config=%s side=%s bound=%v measured=%.3fs ratio=%.3f",
				detectConfig(c), side, bound, d.measured.Seconds(), float64(d.measured)/float64(bound))
			assert.ErrorIs(t, d.err, syscall.ETIMEDOUT, "read on the end with keepalive")
			assert.GreaterOrEqual(t, d.measured, bound, "detected %v before the bound %v", bound-d.measured, bound)
			assert.LessOrEqual(t, d.measured, limit, "detected %v after the limit %v (bound %v)", d.measured-limit, limit, bound)

			n := <-x.noticed
			assert.ErrorIs(t, n.err, os.ErrDeadlineExceeded, "read on the end without keepalive until the limit")
			info := tcpInfo(t, x.without)
			lost := x.lab.Dropped() - x.dropped
			t.Logf("end without keepalive: read returned %q after %.3fs, state %d (1 is established); firewall dropped %d packets",
				n.err, n.measured.Seconds(), info.State, lost)
			assert.Equal(t, uint8(tcpEstablished), info.State, "TCP state of the end without keepalive")
			assert.GreaterOrEqual(t, lost, uint64(c.Count), "the firewall must have dropped the probes")
		})
	}
}

// labPair listens in the lab's server namespace and dials it from the
// client namespace, through the firewall. An end whose Config is nil has
// keepalive off; the other has its Config applied by keepalive.Dialer or
// keepalive.ListenConfig. Both ends are checked with readKernel and closed
// at cleanup.
func labPair(t *testing.T, lab *netlab.Lab, dial, accept *keepalive.Config) (dialed, accepted net.Conn) {
	t.Helper()
	addr := netip.AddrPortFrom(lab.ServerAddr(), 0).String()
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		var err error
		if accept != nil {
			lc := keepalive.ListenConfig{Config: *accept}
			ln, err = lc.Listen(context.Background(), "tcp", addr)
		} else {
			lc := net.ListenConfig{KeepAlive: -1}
			ln, err = lc.Listen(context.Background(), "tcp", addr)
		}
		return err
	}))
	t.Cleanup(func() { ln.Close() })

	dialed, accepted = pair(t, ln, func(ctx context.Context, network, address string) (net.Conn, error) {
		var conn net.Conn
		err := lab.Client(func() error {
			var err error
			if dial != nil {
				d := keepalive.Dialer{Config: *dial}
				conn, err = d.DialContext(ctx, network, address)
			} else {
				conn, err = plainDial(ctx, network, address)
			}
			return err
		})
		return conn, err
	})
	for _, end := range []struct {
		name string
		conn net.Conn
		c    *keepalive.Config
	}{{"dialed", dialed, dial}, {"accepted", accepted, accept}} {
		got := readKernel(t, end.conn)
		if end.c == nil {
			require.False(t, got.KeepAlive, "%s end: keepalive must be off", end.name)
			continue
		}
		want := expect(t, *end.c)
		want.MPTCP = got.MPTCP
		require.Equal(t, want, got, "%s end", end.name)
	}
	return dialed, accepted
}
