package keepalive_test

import (
	"context"
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/windows"

	"github.com/keepalive-go/keepalive"
)

// TestWindowsSet checks Set on both ends of connections on which the
// standard library set its own keepalive (15 s / 15 s, on): every Config
// replaces it, a zero field with the system default. Where the values
// cannot be read back the Linux side of TestWindowsUnderWine reads them.
func TestWindowsSet(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	for _, c := range windowsConfigs(thisHost(t)) {
		t.Run(configName(c), func(t *testing.T) {
			dialed, accepted := pair(t, ln, (&net.Dialer{}).DialContext)
			for _, e := range []struct {
				end  string
				conn net.Conn
			}{{"dialed", dialed}, {"accepted", accepted}} {
				require.True(t, readSocket(t, tcpConn(t, e.conn)).KeepAlive, "the standard library's keepalive, %s", e.end)
				require.NoError(t, keepalive.Set(e.conn, c), e.end)
				checkApplied(t, "Set/"+e.end, e.conn, c)
			}
		})
	}
}

// TestWindowsGetNew checks what Get reports for a new socket: keepalive
// off, the system defaults, no user timeout; or, where the values cannot
// be read back, an error that says why.
func TestWindowsGetNew(t *testing.T) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	dialed, accepted := pair(t, ln, plainDial)
	for _, conn := range []net.Conn{dialed, accepted} {
		assert.False(t, readSocket(t, tcpConn(t, conn)).KeepAlive, "SO_KEEPALIVE of a new socket")
		checkGet(t, conn, keepalive.Config{Off: true})
	}
}

// TestWindowsDisable checks that Disable turns keepalive off and leaves the
// times, which a later Set with keepalive on brings back.
func TestWindowsDisable(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	for _, c := range windowsConfigs(thisHost(t)) {
		if c.Off {
			continue
		}
		t.Run(configName(c), func(t *testing.T) {
			dialed, accepted := pair(t, ln, plainDial)
			off := c
			off.Off = true
			for _, e := range []struct {
				end  string
				conn net.Conn
			}{{"dialed", dialed}, {"accepted", netConner{accepted}}} {
				require.NoError(t, keepalive.Set(e.conn, c))
				require.NoError(t, keepalive.Disable(e.conn))
				checkApplied(t, "Disable/"+e.end, e.conn, off)
				require.NoError(t, keepalive.Disable(e.conn), "twice")
				assert.False(t, readSocket(t, tcpConn(t, e.conn)).KeepAlive, "twice")
				require.NoError(t, keepalive.Set(e.conn, c))
				checkApplied(t, "SetAfterDisable/"+e.end, e.conn, c)
			}
		})
	}
}

// TestWindowsUnsupported checks Count and UserTimeout where this Windows
// lacks their options: Validate, Set, Control, Dialer and ListenConfig
// refuse them with an error that wraps errors.ErrUnsupported and says why,
// and leave the socket untouched. Where it has them, Set applies them.
func TestWindowsUnsupported(t *testing.T) {
	k, w := thisHost(t), wantPlatform(t)
	tests := []struct {
		field string
		c     keepalive.Config
		has   bool
		why   string
	}{
		{"Count", keepalive.Config{Idle: 30 * time.Second, Count: 3}, k.count, w.Count.why},
		{"UserTimeout", keepalive.Config{Idle: 30 * time.Second, UserTimeout: 40 * time.Second}, k.maxRT, w.UserTimeout.why},
	}
	ln := listen(t, &keepalive.ListenConfig{})
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			dialed, _ := pair(t, ln, plainDial)
			if tt.has {
				require.NoError(t, keepalive.Set(dialed, tt.c))
				assert.Equal(t, wantKernel(t, tt.c), readSocket(t, tcpConn(t, dialed)))
				return
			}
			want := "keepalive: " + tt.field + " is not supported on windows/" + runtime.GOARCH + ": " + tt.why
			err := tt.c.Validate()
			assert.EqualError(t, err, want, "Validate")
			assert.ErrorIs(t, err, errors.ErrUnsupported, "Validate")
			var fe *keepalive.FieldError
			if assert.ErrorAs(t, err, &fe) {
				assert.Equal(t, tt.field, fe.Field)
				assert.Empty(t, fe.Min+fe.Max, "no range for a field that cannot be set")
			}

			assert.Equal(t, err, keepalive.Set(dialed, tt.c), "Set")
			assert.False(t, readSocket(t, tcpConn(t, dialed)).KeepAlive, "Set left the socket untouched")
			assert.Equal(t, err, tt.c.Control("tcp", "127.0.0.1:1", nil), "Control")
			d := keepalive.Dialer{Config: tt.c}
			_, derr := d.DialContext(context.Background(), "tcp", ln.Addr().String())
			assert.Equal(t, err, derr, "Dialer.DialContext")
			_, derr = d.ConfiguredNetDialer()
			assert.Equal(t, err, derr, "Dialer.ConfiguredNetDialer")
			lc := keepalive.ListenConfig{Config: tt.c}
			_, lerr := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			assert.Equal(t, err, lerr, "ListenConfig.Listen")
		})
	}
}

// TestWindowsNotTCP checks that Set, Get and Disable refuse a UDP socket
// and a file, naming why, from the protocol Windows reports.
func TestWindowsNotTCP(t *testing.T) {
	// A socket of the test's own: the standard library's UDP sockets need
	// SIO_UDP_NETRESET, which Wine 8.0 lacks.
	s, err := windows.Socket(windows.AF_INET, windows.SOCK_DGRAM, windows.IPPROTO_UDP)
	require.NoError(t, err)
	t.Cleanup(func() { windows.Closesocket(s) })
	udp := handleConn{s}
	f, err := os.Open(os.Args[0])
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	tests := []struct {
		name string
		s    any
		want string
	}{
		{"udp", udp, "keepalive: not a TCP socket: keepalive_test.handleConn (socket protocol 17)"},
		{"file", f, "keepalive: not a TCP socket: *os.File (not a socket)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := keepalive.Set(tt.s, keepalive.Config{Idle: time.Minute})
			assert.ErrorIs(t, err, keepalive.ErrNotTCP)
			assert.EqualError(t, err, tt.want, "Set")
			_, err = keepalive.Get(tt.s)
			assert.EqualError(t, err, tt.want, "Get")
			assert.EqualError(t, keepalive.Disable(tt.s), tt.want, "Disable")
		})
	}
}

// handleConn is a syscall.RawConn for a socket handle.
type handleConn struct{ s windows.Handle }

func (h handleConn) Control(f func(fd uintptr)) error    { f(uintptr(h.s)); return nil }
func (h handleConn) Read(f func(fd uintptr) bool) error  { f(uintptr(h.s)); return nil }
func (h handleConn) Write(f func(fd uintptr) bool) error { f(uintptr(h.s)); return nil }
