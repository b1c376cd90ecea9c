package keepalive_test

import (
	"context"
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
	for _, tt := range shapes(t) {
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
