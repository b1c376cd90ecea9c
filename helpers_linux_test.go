package keepalive_test

import (
	"context"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// Linux's own pieces of the helpers (see helpers_test.go), and what the
// Linux-only tests use: Multipath TCP, option numbers, /proc.

// kernel is what getsockopt reports for a socket, read independently of
// keepalive.Get.
type kernel = sockopts.Values

// hostFacts finds nothing: Linux's answers do not depend on the host.
func hostFacts() (host, error) { return host{}, nil }

// readSocket reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
// TCP_USER_TIMEOUT and SO_PROTOCOL of any TCP socket, a listening one
// included, inside Control, and asserts nothing inside the closure.
func readSocket(t testing.TB, sc syscall.Conn) kernel {
	t.Helper()
	k, err := sockopts.Read(sc)
	require.NoError(t, err, "getsockopt")
	return k
}

// kernelOf returns what readSocket reports for a plain (not Multipath) TCP
// socket of which Get reports c.
func kernelOf(_ testing.TB, c keepalive.Config) kernel {
	return kernel{KeepAlive: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
}

// readKernel is readSocket for a connection, which must be a
// *net.TCPConn.
func readKernel(t testing.TB, conn net.Conn) kernel {
	t.Helper()
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "want *net.TCPConn, got %T", conn)
	return readSocket(t, tc)
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

// getInt reads one integer socket option of the socket behind sc.
func getInt(t testing.TB, sc syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), level, opt)
	}))
	require.NoError(t, gerr, "getsockopt(%d, %d)", level, opt)
	return v
}

// setInt sets one integer socket option on the socket behind sc.
func setInt(t testing.TB, sc syscall.Conn, level, opt, v int) {
	t.Helper()
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, v)
	}))
	require.NoError(t, serr, "setsockopt(%d, %d, %d)", level, opt, v)
}

// asConfig returns what keepalive.Get must report for a socket on which
// getsockopt reports k.
func asConfig(k kernel) keepalive.Config {
	return keepalive.Config{Idle: k.Idle, Interval: k.Interval, Count: k.Count, UserTimeout: k.UserTimeout, Off: !k.KeepAlive}
}

// mustGet is keepalive.Get for a connection that must be readable.
func mustGet(t testing.TB, conn net.Conn) keepalive.Config {
	t.Helper()
	s, err := keepalive.Get(conn)
	require.NoError(t, err)
	return s
}

// openFDs counts the entries of /proc/self/fd.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// mptcpListenConfig returns a net.ListenConfig with Multipath TCP on, and
// skips the test (fails it in CI) where the kernel gives a plain TCP socket
// for it.
func mptcpListenConfig(t *testing.T) *net.ListenConfig {
	t.Helper()
	lc := &net.ListenConfig{}
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	if p := getInt(t, ln.(*net.TCPListener), unix.SOL_SOCKET, unix.SO_PROTOCOL); p != unix.IPPROTO_MPTCP {
		skipOutsideCI(t, "Multipath TCP is not available (listener has SO_PROTOCOL %d; needs CONFIG_MPTCP and sysctl net.mptcp.enabled=1)", p)
	}
	return lc
}

// mptcpDialer returns a net.Dialer with Multipath TCP on and the standard
// library's keepalive off.
func mptcpDialer() *net.Dialer {
	d := &net.Dialer{KeepAlive: -1}
	d.SetMultipathTCP(true)
	return d
}

// multipath reports whether conn uses Multipath TCP, as the standard
// library sees it.
func multipath(t testing.TB, conn net.Conn) bool {
	t.Helper()
	mp, err := conn.(*net.TCPConn).MultipathTCP()
	require.NoError(t, err)
	return mp
}

// assertBothEnds checks that getsockopt and keepalive.Get report want on
// both the dialed and the accepted end of a connection.
func assertBothEnds(t testing.TB, want kernel, dialed, accepted net.Conn) {
	t.Helper()
	assert.Equal(t, want, readKernel(t, dialed), "dialed")
	assert.Equal(t, want, readKernel(t, accepted), "accepted")
	assert.Equal(t, asConfig(want), mustGet(t, dialed), "Get dialed")
	assert.Equal(t, asConfig(want), mustGet(t, accepted), "Get accepted")
}
