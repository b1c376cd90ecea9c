package keepalive_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/windows"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/wine"
)

// windowsKind is what this Windows offers, found by trying the options with
// the test's own setsockopt on a new socket, independently of the package.
type windowsKind struct {
	times bool // TCP_KEEPIDLE and TCP_KEEPINTVL: Windows 10 1709 and later
	count bool // TCP_KEEPCNT: Windows 10 1703 and later
	maxRT bool // TCP_MAXRT: Windows, not Wine 8.0
}

var thisWindows = sync.OnceValues(func() (windowsKind, error) {
	s, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		return windowsKind{}, err
	}
	defer windows.Closesocket(s)
	works := func(opt int) bool {
		err := windows.SetsockoptInt(s, windows.IPPROTO_TCP, opt, 1)
		return !errors.Is(err, windows.WSAENOPROTOOPT)
	}
	return windowsKind{
		times: works(windows.TCP_KEEPIDLE) && works(windows.TCP_KEEPINTVL),
		count: works(windows.TCP_KEEPCNT),
		maxRT: works(windows.TCP_MAXRT),
	}, nil
})

// kind returns what this Windows offers.
func kind(t testing.TB) windowsKind {
	t.Helper()
	k, err := thisWindows()
	require.NoError(t, err, "socket")
	return k
}

// wantPlatform is what Platform must report on each kind of Windows: the
// one place that holds the expectations per kind. Windows 10 1709 and
// later has every option and reads them back; Wine and Windows before 1709
// set Idle and Interval only together with SIO_KEEPALIVE_VALS, which cannot
// be read back, and have no TCP_KEEPCNT (before 1703).
func wantPlatform(k windowsKind) keepalive.Capabilities {
	times := func(option string) keepalive.Support {
		if k.times {
			return keepalive.Support{Option: option, Set: true, Get: true, Unit: time.Second, Min: 1, Max: 32767}
		}
		return keepalive.Support{Option: "SIO_KEEPALIVE_VALS", Set: true, Unit: time.Second, Min: 1, Max: 32767}
	}
	c := keepalive.Capabilities{
		Idle:           times("TCP_KEEPIDLE"),
		Interval:       times("TCP_KEEPINTVL"),
		Off:            keepalive.Support{Option: "SO_KEEPALIVE", Set: true, Get: true},
		SystemDefaults: true,
	}
	if k.count {
		c.Count = keepalive.Support{Option: "TCP_KEEPCNT", Set: true, Get: true, Min: 1, Max: 255}
	}
	if k.maxRT {
		c.UserTimeout = keepalive.Support{Option: "TCP_MAXRT", Set: true, Get: true, Unit: time.Second, Min: 1, Max: 2147483}
	}
	return c
}

// Why the package refuses what a kind of Windows lacks: the text after
// "FIELD is not supported on windows/GOARCH: ".
const (
	whyNoReadBack = "the idle time and interval are set with SIO_KEEPALIVE_VALS, which cannot be read back; " +
		"this system refuses TCP_KEEPIDLE and TCP_KEEPINTVL (WSAENOPROTOOPT), as Windows before 10 version 1709 and Wine do"
	whyNoCount = "this system refuses TCP_KEEPCNT (WSAENOPROTOOPT), as Windows before 10 version 1703 and Wine do; " +
		"Windows sends 10 probes, which cannot be changed"
	whyNoMaxRT = "this system refuses TCP_MAXRT (WSAENOPROTOOPT), as Wine does (Windows has it since Vista)"
)

// windowsConfigs are the Configs to apply on this Windows: wineConfigs,
// and where the options exist, Configs with Count and UserTimeout.
func windowsConfigs(k windowsKind) []keepalive.Config {
	configs := append([]keepalive.Config(nil), wineConfigs...)
	if k.count {
		configs = append(configs, keepalive.Config{Count: 4}, keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 255})
	}
	if k.maxRT {
		configs = append(configs, keepalive.Config{UserTimeout: 40 * time.Second}, keepalive.Config{Off: true, UserTimeout: 2147483 * time.Second})
	}
	return configs
}

// winsock is what getsockopt reports for a socket, read with the test's
// own calls. Only KeepAlive can be read on every Windows.
type winsock struct {
	KeepAlive   bool
	Idle        time.Duration // TCP_KEEPIDLE, where k.times
	Interval    time.Duration // TCP_KEEPINTVL, where k.times
	Count       int           // TCP_KEEPCNT, where k.count
	UserTimeout time.Duration // TCP_MAXRT, where k.maxRT; zero when it is as on a new socket
}

// readWinsock reads the options of the socket behind sc that this Windows
// can read, inside Control, and asserts nothing inside the closure.
func readWinsock(t testing.TB, sc syscall.Conn) winsock {
	t.Helper()
	k := kind(t)
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var w winsock
	var errs []error
	get := func(s windows.Handle, level, opt int32) int {
		// A boolean option is written as one byte: zero the int first.
		var v int32
		n := int32(unsafe.Sizeof(v))
		if err := windows.Getsockopt(s, level, opt, (*byte)(unsafe.Pointer(&v)), &n); err != nil {
			errs = append(errs, err)
		}
		return int(v)
	}
	require.NoError(t, rc.Control(func(fd uintptr) {
		s := windows.Handle(fd)
		w.KeepAlive = get(s, windows.SOL_SOCKET, windows.SO_KEEPALIVE) != 0
		if k.times {
			w.Idle = time.Duration(get(s, windows.IPPROTO_TCP, windows.TCP_KEEPIDLE)) * time.Second
			w.Interval = time.Duration(get(s, windows.IPPROTO_TCP, windows.TCP_KEEPINTVL)) * time.Second
		}
		if k.count {
			w.Count = get(s, windows.IPPROTO_TCP, windows.TCP_KEEPCNT)
		}
		if k.maxRT {
			if rt := get(s, windows.IPPROTO_TCP, windows.TCP_MAXRT); rt != maxRTDefault(t) {
				w.UserTimeout = time.Duration(rt) * time.Second
			}
		}
	}))
	require.NoError(t, errors.Join(errs...), "getsockopt")
	return w
}

// maxRTDefault returns TCP_MAXRT on a new socket.
func maxRTDefault(t testing.TB) int {
	t.Helper()
	v, err := newSocketMaxRT()
	require.NoError(t, err, "TCP_MAXRT of a new socket")
	return v
}

var newSocketMaxRT = sync.OnceValues(func() (int, error) {
	s, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		return 0, err
	}
	defer windows.Closesocket(s)
	return windows.GetsockoptInt(s, windows.IPPROTO_TCP, windows.TCP_MAXRT)
})

// wantWinsock returns what readWinsock must report for a socket
// configured with c on this Windows: each zero field at the system
// default, and only what this Windows can read.
func wantWinsock(t testing.TB, c keepalive.Config) winsock {
	t.Helper()
	k := kind(t)
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	w := winsock{KeepAlive: !c.Off}
	c = withDefaults(c, sys)
	if k.times {
		w.Idle, w.Interval = c.Idle, c.Interval
	}
	if k.count {
		w.Count = c.Count
	}
	if k.maxRT {
		w.UserTimeout = c.UserTimeout
	}
	return w
}

// withDefaults returns c with each zero Idle, Interval and Count taken from
// sys: what Get reports after Set(c).
func withDefaults(c, sys keepalive.Config) keepalive.Config {
	if c.Idle == 0 {
		c.Idle = sys.Idle
	}
	if c.Interval == 0 {
		c.Interval = sys.Interval
	}
	if c.Count == 0 {
		c.Count = sys.Count
	}
	return c
}

// checkApplied checks that conn, which is or wraps a TCP socket of
// source, holds c: getsockopt reports it where this Windows can read it,
// and Get returns it with its zero fields at the system defaults, or fails
// where the values cannot be read back. Then it holds the socket for the
// Linux side under Wine.
func checkApplied(t testing.TB, source string, conn net.Conn, c keepalive.Config) {
	t.Helper()
	tc := tcpConn(t, conn)
	assert.Equal(t, wantWinsock(t, c), readWinsock(t, tc), "getsockopt, %s", source)
	checkGet(t, conn, c)
	hold(t, source, c, tc.LocalAddr(), tc.RemoteAddr())
}

// hold holds the socket from local to remote (nil: the one listening on
// local) of source, configured with c, for the Linux side under Wine,
// with a tag that the Linux side reads back.
func hold(t testing.TB, source string, c keepalive.Config, local, remote net.Addr) {
	t.Helper()
	require.Contains(t, wineSources, source, "a source the Linux side knows")
	tag := wineTag(source, c)
	s, pc, err := parseWineTag(tag)
	require.NoError(t, err, "tag %q", tag)
	require.Equal(t, []any{source, c}, []any{s, pc}, "tag %q read back", tag)
	wine.Hold(t, tag, local, remote)
}

// checkGet checks what Get reports for conn, configured with c.
func checkGet(t testing.TB, conn net.Conn, c keepalive.Config) {
	t.Helper()
	got, err := keepalive.Get(conn)
	if kind(t).times {
		sys, serr := keepalive.SystemDefaults()
		require.NoError(t, serr)
		if assert.NoError(t, err, "Get") {
			assert.Equal(t, withDefaults(c, sys), got, "Get")
		}
		return
	}
	assert.ErrorIs(t, err, errors.ErrUnsupported, "Get")
	assert.ErrorContains(t, err, "reading Idle back is not supported on windows/"+runtime.GOARCH+": "+whyNoReadBack, "Get")
	assert.Zero(t, got, "Get")
}

// tcpConn returns the *net.TCPConn that conn is or wraps.
func tcpConn(t testing.TB, conn net.Conn) *net.TCPConn {
	t.Helper()
	for {
		nc, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = nc.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "want *net.TCPConn, got %T", conn)
	return tc
}

// listen starts a listener from lc on loopback, closed at cleanup.
func listen(t testing.TB, lc *keepalive.ListenConfig) net.Listener {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

type dialFunc = func(ctx context.Context, network, address string) (net.Conn, error)

// pair dials ln with dial and accepts the connection; both are closed at
// cleanup.
func pair(t testing.TB, ln net.Listener, dial dialFunc) (dialed, accepted net.Conn) {
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

// plainDial dials with the standard library's keepalive off.
func plainDial(ctx context.Context, network, address string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	return d.DialContext(ctx, network, address)
}
