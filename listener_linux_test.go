package keepalive_test

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// TestListenConfigMultipathUserTimeout checks that accepted connections
// carry UserTimeout although the base listen config uses Multipath TCP (the
// default since Go 1.24), whose sockets refuse TCP_USER_TIMEOUT. The
// listener must be plain TCP from the start: the standard library would
// otherwise make a Multipath socket, see the hook fail on it, and retry with
// plain TCP, running the caller's Control hook twice.
func TestListenConfigMultipathUserTimeout(t *testing.T) {
	base := mptcpListenConfig(t)
	var calls atomic.Int32
	base.Control = func(string, string, syscall.RawConn) error {
		calls.Add(1)
		return nil
	}
	for _, c := range []keepalive.Config{
		{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 9 * time.Second},
		{UserTimeout: 9 * time.Second},
	} {
		t.Run(configName(c), func(t *testing.T) {
			want := expect(t, c)
			calls.Store(0)
			ln := listen(t, &keepalive.ListenConfig{NetListenConfig: base, Config: c})
			assert.Equal(t, int32(1), calls.Load(), "calls of the caller's Control hook")
			assert.Equal(t, want, readSocket(t, ln.(*net.TCPListener)), "listener")
			// A Multipath dialer, so that the connection would be
			// Multipath end to end if the listener were.
			dialed, accepted := pair(t, ln, mptcpDialer().DialContext)
			assert.Equal(t, want, readKernel(t, accepted), "accepted")
			assert.False(t, multipath(t, accepted), "accepted MultipathTCP")
			assert.False(t, multipath(t, dialed), "dialed MultipathTCP")
			assert.Equal(t, asConfig(want), mustGet(t, accepted), "Get accepted")
			assert.True(t, base.MultipathTCP(), "NetListenConfig modified")
		})
	}
}

// TestMultipathKept checks that without UserTimeout a Multipath TCP
// listener and dialer stay Multipath and carry every keepalive option.
func TestMultipathKept(t *testing.T) {
	base := mptcpListenConfig(t)
	for _, tt := range []struct {
		name string
		c    keepalive.Config
	}{
		{"zero", keepalive.Config{}},
		{"all but UserTimeout", keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := expect(t, tt.c)
			want.MPTCP = true
			ln := listen(t, &keepalive.ListenConfig{NetListenConfig: base, Config: tt.c})
			assert.Equal(t, want, readSocket(t, ln.(*net.TCPListener)), "listener")
			d := &keepalive.Dialer{NetDialer: mptcpDialer(), Config: tt.c}
			for _, m := range dialMethods(t, d) {
				t.Run(m.name, func(t *testing.T) {
					dialed, accepted := pair(t, ln, m.dial)
					assert.True(t, multipath(t, dialed), "dialed MultipathTCP")
					assert.True(t, multipath(t, accepted), "accepted MultipathTCP")
					assertBothEnds(t, want, dialed, accepted)
				})
			}
		})
	}
}

// TestListenConfigCallerHook checks that the base listen config's Control
// hook runs and that the options are set too.
func TestListenConfigCallerHook(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	want := expect(t, c)
	var n atomic.Int32
	ln := listen(t, &keepalive.ListenConfig{NetListenConfig: &net.ListenConfig{Control: rcvbufHook(&n)}, Config: c})
	assert.Equal(t, int32(1), n.Load(), "Control calls")
	tl := ln.(*net.TCPListener)
	assert.Equal(t, 2*hookRcvbuf, getInt(t, tl, unix.SOL_SOCKET, unix.SO_RCVBUF), "SO_RCVBUF set by the hook")
	assert.Equal(t, want, readSocket(t, tl), "listener")
	_, accepted := pair(t, ln, plainDial)
	assert.Equal(t, want, readKernel(t, accepted), "accepted")
	assert.Equal(t, 2*hookRcvbuf, getInt(t, accepted.(*net.TCPConn), unix.SOL_SOCKET, unix.SO_RCVBUF), "SO_RCVBUF inherited")
}

// TestAcceptInherits checks that on Linux nothing is set per accepted
// connection: the options are on the listening socket, and an accepted
// socket reports whatever the listening socket holds at accept time.
func TestAcceptInherits(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	lc := &keepalive.ListenConfig{Config: c}
	ln := listen(t, lc)
	tl, ok := ln.(*net.TCPListener)
	require.True(t, ok, "Listen returned %T, not the standard library's *net.TCPListener", ln)
	assert.Equal(t, expect(t, c), readSocket(t, tl), "listener")
	_, accepted := pair(t, ln, plainDial)
	require.Equal(t, expect(t, c), readKernel(t, accepted), "accepted before the change")

	// Change every option behind the library's back.
	changed := kernel{KeepAlive: true, Idle: 77 * time.Second, Interval: 8 * time.Second, Count: 5, UserTimeout: 6500 * time.Millisecond}
	setInt(t, tl, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 77)
	setInt(t, tl, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 8)
	setInt(t, tl, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 5)
	setInt(t, tl, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 6500)
	for range 5 {
		_, accepted := pair(t, ln, plainDial)
		assert.Equal(t, changed, readKernel(t, accepted), "accepted after the change")
	}

	// Even SO_KEEPALIVE comes from the listening socket.
	setInt(t, tl, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 0)
	changed.KeepAlive = false
	_, accepted = pair(t, ln, plainDial)
	assert.Equal(t, changed, readKernel(t, accepted), "accepted after SO_KEEPALIVE off")
}

// TestListenerHookNotTCP checks that a unix listen through ListenConfig
// runs the caller's hook and sets nothing.
func TestListenerHookNotTCP(t *testing.T) {
	var networks []string
	base := &net.ListenConfig{Control: func(network, _ string, _ syscall.RawConn) error {
		networks = append(networks, network)
		return nil
	}}
	lc := &keepalive.ListenConfig{NetListenConfig: base, Config: keepalive.Config{Idle: 31 * time.Second, UserTimeout: time.Second}}
	ln, err := lc.Listen(context.Background(), "unix", t.TempDir()+"/s")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	assert.Equal(t, []string{"unix"}, networks)
	assert.Zero(t, getInt(t, ln.(*net.UnixListener), unix.SOL_SOCKET, unix.SO_KEEPALIVE), "SO_KEEPALIVE")
}
