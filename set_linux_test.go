package keepalive_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestSet checks Set on both ends of connections the standard library made:
// one where it set its own 15 s / 15 s / 9, one where it set nothing. A
// zero field puts the system default back, so the socket ends with the
// same values whatever it held before.
func TestSet(t *testing.T) {
	goDefaults := kernel{KeepAlive: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}
	untouched := expect(t, keepalive.Config{})
	untouched.KeepAlive = false
	bases := []struct {
		name   string
		lc     *net.ListenConfig
		dial   dialFunc
		before kernel
	}{
		{"net.Dial", &net.ListenConfig{}, (&net.Dialer{}).DialContext, goDefaults},
		{"KeepAlive -1", &net.ListenConfig{KeepAlive: -1}, plainDial, untouched},
	}
	for _, b := range bases {
		ln, err := b.lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		for _, tt := range valueConfigs {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				dialed, accepted := pair(t, ln, b.dial)
				for _, conn := range []net.Conn{dialed, accepted} {
					require.Equal(t, b.before, readKernel(t, conn), "before Set")
					require.NoError(t, keepalive.Set(conn, tt.c))
					want := expect(t, tt.c)
					assert.Equal(t, want, readKernel(t, conn))
					assert.Equal(t, asConfig(want), mustGet(t, conn), "Get")
				}
			})
		}
	}
}

// TestSetGetRoundTrip checks that Get after Set returns the Config with its
// zero fields at the system defaults, whatever the socket held before, so
// that DetectionTime of the Config is the socket's.
func TestSetGetRoundTrip(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	ln := listen(t, &keepalive.ListenConfig{})
	dialed, _ := pair(t, ln, plainDial)
	var configs []keepalive.Config
	for _, tt := range valueConfigs {
		configs = append(configs, tt.c)
		off := tt.c
		off.Off = true
		configs = append(configs, off)
	}
	// Every Config after every other: a zero field must undo what the one
	// before set.
	for _, prev := range configs {
		for _, c := range configs {
			require.NoError(t, keepalive.Set(dialed, prev))
			require.NoError(t, keepalive.Set(dialed, c), "%v after %v", c, prev)
			got := mustGet(t, dialed)
			if !assert.Equal(t, withDefaults(c, sys), got, "%v after %v", c, prev) {
				return
			}
			assert.Equal(t, c.DetectionTime(sys), got.DetectionTime(keepalive.Config{}), "DetectionTime of %v", c)
		}
	}
}

// TestSetTLS checks Set, Get and Disable through a *tls.Conn, which wraps
// the *net.TCPConn behind NetConn.
func TestSetTLS(t *testing.T) {
	serverTLS, clientTLS := tlsConfigs(t)
	raw, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	ln := handshakeListener{tls.NewListener(raw, serverTLS)}
	td := &tls.Dialer{NetDialer: &net.Dialer{KeepAlive: -1}, Config: clientTLS}
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	dialed, accepted := pair(t, ln, td.DialContext)
	for name, conn := range map[string]net.Conn{"dialed": dialed, "accepted": accepted} {
		t.Run(name, func(t *testing.T) {
			want := expect(t, c)
			tc, ok := conn.(*tls.Conn)
			require.True(t, ok, "got %T", conn)
			require.NoError(t, keepalive.Set(tc, c))
			assert.Equal(t, want, readKernel(t, tc.NetConn()))
			assert.Equal(t, asConfig(want), mustGet(t, tc), "Get")
			require.NoError(t, keepalive.Disable(tc))
			want.KeepAlive = false
			assert.Equal(t, want, readKernel(t, tc.NetConn()), "after Disable")
		})
	}
	exchange(t, dialed, accepted)
}

// TestSetLikeStandardLibrary checks the conversions against the kernel: a
// Config from FromKeepAliveConfig(k) does what SetKeepAliveConfig(k) does,
// and SetKeepAliveConfig(c.KeepAliveConfig()) does what Set(c) does.
func TestSetLikeStandardLibrary(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	for _, k := range []net.KeepAliveConfig{
		{Enable: true},
		{Enable: true, Idle: -1, Interval: -1, Count: -1},
		{Enable: true, Idle: 20 * time.Second, Interval: -1, Count: 4},
		{Enable: true, Idle: 32767 * time.Second, Interval: time.Second, Count: 127},
	} {
		t.Run(fmt.Sprintf("FromKeepAliveConfig %+v", k), func(t *testing.T) {
			std, _ := pair(t, ln, plainDial)
			ours, _ := pair(t, ln, plainDial)
			require.NoError(t, std.(*net.TCPConn).SetKeepAliveConfig(k))
			c, err := keepalive.FromKeepAliveConfig(k)
			require.NoError(t, err)
			require.NoError(t, keepalive.Set(ours, c))
			assert.Equal(t, readKernel(t, std), readKernel(t, ours))
		})
	}
	for _, tt := range valueConfigs {
		if tt.c.UserTimeout != 0 {
			continue
		}
		t.Run("KeepAliveConfig/"+tt.name, func(t *testing.T) {
			std, _ := pair(t, ln, plainDial)
			ours, _ := pair(t, ln, plainDial)
			require.NoError(t, std.(*net.TCPConn).SetKeepAliveConfig(tt.c.KeepAliveConfig()))
			require.NoError(t, keepalive.Set(ours, tt.c))
			assert.Equal(t, readKernel(t, ours), readKernel(t, std))
		})
	}
}

// TestDisable checks that Disable turns SO_KEEPALIVE off and leaves the
// values, which a later Set brings back.
func TestDisable(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	ln := listen(t, &keepalive.ListenConfig{Config: c})
	d := &keepalive.Dialer{Config: c}
	dialed, accepted := pair(t, ln, d.DialContext)
	for name, conn := range map[string]net.Conn{"dialed": dialed, "accepted": netConner{accepted}} {
		t.Run(name, func(t *testing.T) {
			tc := conn
			if w, ok := conn.(netConner); ok {
				tc = w.Conn
			}
			off := expect(t, c)
			off.KeepAlive = false
			require.NoError(t, keepalive.Disable(conn))
			assert.Equal(t, off, readKernel(t, tc))
			assert.Equal(t, asConfig(off), mustGet(t, conn), "Get")

			require.NoError(t, keepalive.Disable(conn), "twice")
			assert.Equal(t, off, readKernel(t, tc), "twice")

			require.NoError(t, keepalive.Set(conn, c))
			assert.Equal(t, expect(t, c), readKernel(t, tc), "Set after Disable")
		})
	}
}

// TestSetAtomicMultipath checks that Set applies the whole Config or
// nothing: on a Multipath TCP socket, which has no user timeout, a Config
// with Idle and UserTimeout fails with an error that says so, and leaves
// every option as it was, Idle included, which Set wrote before it reached
// the user timeout and put back.
func TestSetAtomicMultipath(t *testing.T) {
	ln, err := mptcpListenConfig(t).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	dialed, accepted := pair(t, ln, mptcpDialer().DialContext)
	for name, conn := range map[string]net.Conn{"dialed": dialed, "accepted": accepted} {
		t.Run(name, func(t *testing.T) {
			require.True(t, multipath(t, conn), "Multipath TCP")
			require.NoError(t, keepalive.Set(conn, keepalive.Config{Idle: 50 * time.Second, Count: 6}))
			before := readKernel(t, conn)
			err := keepalive.Set(conn, keepalive.Config{Idle: 20 * time.Second, Interval: 3 * time.Second, UserTimeout: 30 * time.Second})
			require.Error(t, err)
			assert.ErrorIs(t, err, syscall.ENOPROTOOPT)
			assert.ErrorContains(t, err, "TCP_USER_TIMEOUT 30000ms: a Multipath TCP socket has no user timeout")
			assert.True(t, strings.HasPrefix(err.Error(), "keepalive: set tcp "), "%q", err)
			assert.Equal(t, before, readKernel(t, conn), "after the failed Set")

			// Without a user timeout the same Config applies.
			require.NoError(t, keepalive.Set(conn, keepalive.Config{Idle: 20 * time.Second, Interval: 3 * time.Second}))
			want := expect(t, keepalive.Config{Idle: 20 * time.Second, Interval: 3 * time.Second})
			want.MPTCP = true
			assert.Equal(t, want, readKernel(t, conn))
		})
	}
}

// TestSetSockets checks that Set, Get and Disable take every form of TCP
// socket the standard library exposes, and refuse any other socket with
// ErrNotTCP naming what they reached.
func TestSetSockets(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	var plain net.ListenConfig
	plain.SetMultipathTCP(false)
	ln := listen(t, &keepalive.ListenConfig{NetListenConfig: &plain})
	dialed, _ := pair(t, ln, plainDial)
	tc := dialed.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	require.NoError(t, err)
	f, err := tc.File() // a duplicate descriptor of the same socket
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	fc, err := net.FileConn(f) // one more, as a net.Conn
	require.NoError(t, err)
	t.Cleanup(func() { fc.Close() })
	lnRC, err := ln.(*net.TCPListener).SyscallConn()
	require.NoError(t, err)

	sockets := []struct {
		name string
		s    any
		read syscall.Conn // where to read the options back
	}{
		{"*net.TCPConn", tc, tc},
		{"net.Conn wrapping it", netConner{tc}, tc},
		{"*os.File", f, tc},
		{"net.FileConn", fc, tc},
		{"syscall.RawConn", rc, tc},
		{"*net.TCPListener", ln, ln.(*net.TCPListener)},
		{"listener's syscall.RawConn", lnRC, ln.(*net.TCPListener)},
	}
	for _, s := range sockets {
		t.Run(s.name, func(t *testing.T) {
			require.NoError(t, keepalive.Set(s.s, keepalive.Config{}))
			require.NoError(t, keepalive.Set(s.s, c))
			want := expect(t, c)
			assert.Equal(t, want, readSocket(t, s.read))
			got, err := keepalive.Get(s.s)
			require.NoError(t, err)
			assert.Equal(t, asConfig(want), got, "Get")
			require.NoError(t, keepalive.Disable(s.s))
			want.KeepAlive = false
			assert.Equal(t, want, readSocket(t, s.read), "after Disable")
		})
	}

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { udp.Close() })
	udpRC, err := udp.(*net.UDPConn).SyscallConn()
	require.NoError(t, err)
	unixLn, err := net.Listen("unix", t.TempDir()+"/sock")
	require.NoError(t, err)
	t.Cleanup(func() { unixLn.Close() })
	unixConn, err := net.Dial("unix", unixLn.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { unixConn.Close() })
	regular, err := os.Open(os.Args[0])
	require.NoError(t, err)
	t.Cleanup(func() { regular.Close() })

	notTCP := []struct {
		name string
		s    any
		want string
	}{
		{"UDP", udp, "keepalive: not a TCP socket: *net.UDPConn (socket protocol 17)"},
		{"UDP RawConn", udpRC, "keepalive: not a TCP socket: *net.rawConn (socket protocol 17)"},
		{"unix", unixConn, "keepalive: not a TCP socket: *net.UnixConn (socket protocol 0)"},
		{"unix inside a wrapper", netConner{unixConn}, "keepalive: not a TCP socket: *net.UnixConn inside keepalive_test.netConner (socket protocol 0)"},
		{"unix listener", unixLn, "keepalive: not a TCP socket: *net.UnixListener (socket protocol 0)"},
		{"regular file", regular, "keepalive: not a TCP socket: *os.File (not a socket)"},
		{"a string", "127.0.0.1:80", "keepalive: not a TCP socket: string"},
	}
	for _, tt := range notTCP {
		t.Run("not TCP/"+tt.name, func(t *testing.T) {
			err := keepalive.Set(tt.s, c)
			assert.ErrorIs(t, err, keepalive.ErrNotTCP)
			assert.EqualError(t, err, tt.want)
			_, err = keepalive.Get(tt.s)
			assert.EqualError(t, err, tt.want)
			assert.EqualError(t, keepalive.Disable(tt.s), tt.want)
		})
	}
}

// TestSetClosed checks that Set, Get and Disable on a closed connection
// fail with the package's prefix and net.ErrClosed.
func TestSetClosed(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	dialed, _ := pair(t, ln, plainDial)
	require.NoError(t, dialed.Close())
	prefix := "keepalive: %s tcp " + dialed.LocalAddr().String() + "->" + dialed.RemoteAddr().String() + ": "
	err := keepalive.Set(dialed, keepalive.Config{Idle: time.Minute})
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf(prefix, "set")), "%q", err)
	_, err = keepalive.Get(dialed)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf(prefix, "get")), "%q", err)
	err = keepalive.Disable(dialed)
	assert.ErrorIs(t, err, net.ErrClosed)
	assert.True(t, strings.HasPrefix(err.Error(), fmt.Sprintf(prefix, "disable")), "%q", err)
}

// TestSetOff checks that Off turns keepalive off on a socket that had it
// on, and writes the other fields all the same.
func TestSetOff(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	dialed, _ := pair(t, ln, (&net.Dialer{}).DialContext) // Go's 15s/15s/9, on
	off := keepalive.Config{Off: true, Interval: 9 * time.Second, UserTimeout: 20 * time.Second}
	require.NoError(t, keepalive.Set(dialed, off))
	want := expect(t, off)
	want.KeepAlive = false
	assert.Equal(t, want, readKernel(t, dialed))
	assert.Equal(t, off.DetectionTime(keepalive.Config{}), keepalive.Never)
	got := mustGet(t, dialed)
	assert.True(t, got.Off)
	assert.Equal(t, keepalive.Never, got.DetectionTime(keepalive.Config{}))
}
