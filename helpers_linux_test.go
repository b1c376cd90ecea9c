package keepalive_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// kernel is what getsockopt reports for a socket, read independently of
// keepalive.Get.
type kernel struct {
	KeepAlive   bool
	Idle        time.Duration
	Interval    time.Duration
	Count       int
	UserTimeout time.Duration
	// MPTCP reports SO_PROTOCOL == IPPROTO_MPTCP; such a socket has no
	// TCP_USER_TIMEOUT, and UserTimeout reads as zero.
	MPTCP bool
}

// readKernel reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
// TCP_USER_TIMEOUT and SO_PROTOCOL inside Control and asserts nothing
// inside the closure.
func readKernel(t testing.TB, conn net.Conn) kernel {
	t.Helper()
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "want *net.TCPConn, got %T", conn)
	rc, err := tc.SyscallConn()
	require.NoError(t, err)
	var k kernel
	var errs []error
	get := func(fd, level, opt int) int {
		v, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	require.NoError(t, rc.Control(func(fdp uintptr) {
		fd := int(fdp)
		k.KeepAlive = get(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
		k.Idle = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second
		k.Interval = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second
		k.Count = get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		k.MPTCP = get(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL) == unix.IPPROTO_MPTCP
		if !k.MPTCP {
			k.UserTimeout = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
		}
	}))
	require.Empty(t, errs, "getsockopt")
	return k
}

// expect returns what the kernel must report for a socket configured with
// c: keepalive on, and each zero field at the system default.
func expect(t testing.TB, c keepalive.Config) kernel {
	t.Helper()
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	k := kernel{KeepAlive: true, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
	if k.Idle == 0 {
		k.Idle = sys.Idle
	}
	if k.Interval == 0 {
		k.Interval = sys.Interval
	}
	if k.Count == 0 {
		k.Count = sys.Count
	}
	return k
}

// listen starts a listener from lc on loopback, closed at cleanup.
func listen(t testing.TB, lc *keepalive.ListenConfig) net.Listener {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair dials ln with dial and accepts the connection; both are closed at
// cleanup.
func pair(t testing.TB, ln net.Listener, dial func(ctx context.Context, network, address string) (net.Conn, error)) (dialed, accepted net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	dialed, err := dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { dialed.Close() })
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { r.c.Close() })
	return dialed, r.c
}
