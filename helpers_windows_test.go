package keepalive_test

import (
	"errors"
	"net"
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

// Windows' own pieces of the helpers (see helpers_test.go), and what the
// Windows tests that hold sockets for TestWindowsUnderWine share.

// hostFacts finds out what this Windows offers by trying the options with
// the test's own setsockopt on a new socket, independently of the package.
func hostFacts() (host, error) {
	s, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		return host{}, err
	}
	defer windows.Closesocket(s)
	works := func(opt int) bool {
		err := windows.SetsockoptInt(s, windows.IPPROTO_TCP, opt, 1)
		return !errors.Is(err, windows.WSAENOPROTOOPT)
	}
	return host{
		times: works(windows.TCP_KEEPIDLE) && works(windows.TCP_KEEPINTVL),
		count: works(windows.TCP_KEEPCNT),
		maxRT: works(windows.TCP_MAXRT),
	}, nil
}

// windowsConfigs are the Configs to apply on this Windows: wineConfigs,
// and where the options exist, Configs with Count and UserTimeout.
func windowsConfigs(k host) []keepalive.Config {
	configs := append([]keepalive.Config(nil), wineConfigs...)
	if k.count {
		configs = append(configs, keepalive.Config{Count: 4}, keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 255})
	}
	if k.maxRT {
		configs = append(configs, keepalive.Config{UserTimeout: 40 * time.Second}, keepalive.Config{Off: true, UserTimeout: 2147483 * time.Second})
	}
	return configs
}

// kernel is what getsockopt reports for a socket, read with the test's
// own calls. Only KeepAlive can be read on every Windows.
type kernel struct {
	KeepAlive   bool
	Idle        time.Duration // TCP_KEEPIDLE, where k.times
	Interval    time.Duration // TCP_KEEPINTVL, where k.times
	Count       int           // TCP_KEEPCNT, where k.count
	UserTimeout time.Duration // TCP_MAXRT, where k.maxRT; zero when it is as on a new socket
}

// readSocket reads the options of the socket behind sc that this Windows
// can read, a listening socket included, inside Control, and asserts
// nothing inside the closure.
func readSocket(t testing.TB, sc syscall.Conn) kernel {
	t.Helper()
	k := thisHost(t)
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var w kernel
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

// kernelOf returns what readSocket reports for a socket of which Get
// reports c, on this Windows: only what it can read.
func kernelOf(t testing.TB, c keepalive.Config) kernel {
	t.Helper()
	k := thisHost(t)
	w := kernel{KeepAlive: !c.Off}
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

// wantKernel returns what readSocket must report for a socket configured
// with c on this Windows: each zero field at the system default.
func wantKernel(t testing.TB, c keepalive.Config) kernel {
	t.Helper()
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	return kernelOf(t, c.WithDefaults(sys))
}

// checkApplied checks that conn, which is or wraps a TCP socket of
// source, holds c: getsockopt reports it where this Windows can read it,
// and Get returns it with its zero fields at the system defaults, or fails
// where the values cannot be read back. Then it holds the socket for the
// Linux side under Wine.
func checkApplied(t testing.TB, source string, conn net.Conn, c keepalive.Config) {
	t.Helper()
	tc := tcpConn(t, conn)
	assert.Equal(t, wantKernel(t, c), readSocket(t, tc), "getsockopt, %s", source)
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
	if thisHost(t).times {
		sys, serr := keepalive.SystemDefaults()
		require.NoError(t, serr)
		if assert.NoError(t, err, "Get") {
			assert.Equal(t, c.WithDefaults(sys), got, "Get")
		}
		return
	}
	assert.ErrorIs(t, err, errors.ErrUnsupported, "Get")
	assert.ErrorContains(t, err, unsupportedText("reading Idle back", wantPlatform(t).Idle.why), "Get")
	assert.Zero(t, got, "Get")
}
