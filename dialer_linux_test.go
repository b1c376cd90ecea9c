package keepalive_test

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// TestDialerMultipathUserTimeout checks that a base dialer with Multipath
// TCP on still yields every option when UserTimeout is set (an MPTCP socket
// refuses TCP_USER_TIMEOUT), and keeps Multipath TCP when it is not.
func TestDialerMultipathUserTimeout(t *testing.T) {
	mlc := mptcpListenConfig(t)
	// A Multipath TCP listener with the zero Config stays Multipath, so a
	// Multipath dial to it would be Multipath end to end.
	ln := listen(t, &keepalive.ListenConfig{NetListenConfig: mlc})
	require.True(t, readSocket(t, ln.(*net.TCPListener)).MPTCP, "listener is not Multipath TCP")

	tests := []struct {
		name   string
		c      keepalive.Config
		wantMP bool
	}{
		{"UserTimeout", keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 9 * time.Second}, false},
		{"only UserTimeout", keepalive.Config{UserTimeout: 9 * time.Second}, false},
		{"no UserTimeout", keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := mptcpDialer()
			var calls atomic.Int32
			base.Control = func(string, string, syscall.RawConn) error {
				calls.Add(1)
				return nil
			}
			d := &keepalive.Dialer{NetDialer: base, Config: tt.c}
			want := expect(t, tt.c)
			want.MPTCP = tt.wantMP
			for _, m := range dialMethods(t, d) {
				t.Run(m.name, func(t *testing.T) {
					calls.Store(0)
					dialed, accepted := pair(t, ln, m.dial)
					// One socket: no Multipath attempt that fails and
					// is retried with plain TCP.
					assert.Equal(t, int32(1), calls.Load(), "calls of the caller's Control hook")
					assert.Equal(t, want, readKernel(t, dialed), "dialed")
					assert.Equal(t, tt.wantMP, multipath(t, dialed), "dialed MultipathTCP")
					assert.Equal(t, tt.wantMP, multipath(t, accepted), "accepted MultipathTCP")
					assert.Equal(t, asConfig(want), mustGet(t, dialed), "Get dialed")
				})
			}
			assert.True(t, base.MultipathTCP(), "NetDialer modified")
		})
	}
}

const hookRcvbuf = 1 << 16

// rcvbufHook returns a Control hook that counts its calls in n and sets
// SO_RCVBUF to hookRcvbuf, which the kernel reports doubled.
func rcvbufHook(n *atomic.Int32) func(network, address string, rc syscall.RawConn) error {
	return func(network, address string, rc syscall.RawConn) error {
		n.Add(1)
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, hookRcvbuf)
		}); err != nil {
			return err
		}
		return serr
	}
}

// TestDialerCallerHooks checks that the base dialer's Control or
// ControlContext hook runs as the standard library would run it
// (ControlContext wins) and that the options are set too.
func TestDialerCallerHooks(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	want := expect(t, c)
	ln := listen(t, &keepalive.ListenConfig{})
	tests := []struct {
		name                  string
		control, controlCtx   bool
		wantControl, wantCtxN int32
	}{
		{"ControlContext and Control", true, true, 0, 1},
		{"only Control", true, false, 1, 0},
		{"only ControlContext", false, true, 0, 1},
	}
	for _, tt := range tests {
		for _, method := range []string{"DialContext", "ConfiguredNetDialer", "tls.Dialer"} {
			t.Run(tt.name+"/"+method, func(t *testing.T) {
				var nControl, nCtx atomic.Int32
				base := &net.Dialer{}
				if tt.control {
					base.Control = rcvbufHook(&nControl)
				}
				if tt.controlCtx {
					hook := rcvbufHook(&nCtx)
					base.ControlContext = func(_ context.Context, network, address string, rc syscall.RawConn) error {
						return hook(network, address, rc)
					}
				}
				d := &keepalive.Dialer{NetDialer: base, Config: c}
				dial := d.DialContext
				if method != "DialContext" {
					nd, err := d.ConfiguredNetDialer()
					require.NoError(t, err)
					dial = nd.DialContext
				}
				dialed, _ := pair(t, ln, dial)
				assert.Equal(t, want, readKernel(t, dialed))
				assert.Equal(t, 2*hookRcvbuf, getInt(t, dialed.(*net.TCPConn), unix.SOL_SOCKET, unix.SO_RCVBUF), "SO_RCVBUF set by the hook")
				assert.Equal(t, tt.wantControl, nControl.Load(), "Control calls")
				assert.Equal(t, tt.wantCtxN, nCtx.Load(), "ControlContext calls")
			})
		}
	}
}

// TestNonTCPUntouched checks that the same Dialer and ListenConfig dial and
// listen on unix and udp as the standard library does, setting nothing.
func TestNonTCPUntouched(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	var mu sync.Mutex
	var networks []string
	base := &net.Dialer{Control: func(network, _ string, _ syscall.RawConn) error {
		mu.Lock()
		defer mu.Unlock()
		networks = append(networks, network)
		return nil
	}}
	// hookNetworks returns the networks the hook saw since the last call.
	hookNetworks := func() []string {
		mu.Lock()
		defer mu.Unlock()
		n := networks
		networks = nil
		return n
	}
	d := &keepalive.Dialer{NetDialer: base, Config: c}
	nd, err := d.ConfiguredNetDialer()
	require.NoError(t, err)
	methods := []namedDial{{"DialContext", d.DialContext}, {"ConfiguredNetDialer", nd.DialContext}}
	ctx := context.Background()

	path := filepath.Join(t.TempDir(), "s")
	lc := &keepalive.ListenConfig{Config: c}
	uln, err := lc.Listen(ctx, "unix", path)
	require.NoError(t, err)
	t.Cleanup(func() { uln.Close() })
	require.IsType(t, &net.UnixListener{}, uln)
	assert.Zero(t, getInt(t, uln.(*net.UnixListener), unix.SOL_SOCKET, unix.SO_KEEPALIVE), "SO_KEEPALIVE on the unix listener")

	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { pc.Close() })

	for _, m := range methods {
		t.Run("unix/"+m.name, func(t *testing.T) {
			hookNetworks()
			conn, err := m.dial(ctx, "unix", path)
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			accepted, err := uln.Accept()
			require.NoError(t, err)
			t.Cleanup(func() { accepted.Close() })
			require.IsType(t, &net.UnixConn{}, conn)
			assert.Equal(t, []string{"unix"}, hookNetworks(), "the base dialer's hook")
			assert.Zero(t, getInt(t, conn.(*net.UnixConn), unix.SOL_SOCKET, unix.SO_KEEPALIVE), "SO_KEEPALIVE dialed")
			assert.Zero(t, getInt(t, accepted.(*net.UnixConn), unix.SOL_SOCKET, unix.SO_KEEPALIVE), "SO_KEEPALIVE accepted")
			exchange(t, conn, accepted)
		})
		t.Run("udp/"+m.name, func(t *testing.T) {
			hookNetworks()
			conn, err := m.dial(ctx, "udp", pc.LocalAddr().String())
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			require.IsType(t, &net.UDPConn{}, conn)
			assert.Equal(t, []string{"udp4"}, hookNetworks(), "the base dialer's hook")
			assert.Zero(t, getInt(t, conn.(*net.UDPConn), unix.SOL_SOCKET, unix.SO_KEEPALIVE), "SO_KEEPALIVE")

			require.NoError(t, conn.SetDeadline(time.Now().Add(10*time.Second)))
			require.NoError(t, pc.SetDeadline(time.Now().Add(10*time.Second)))
			_, err = conn.Write([]byte("ping"))
			require.NoError(t, err)
			buf := make([]byte, 16)
			n, from, err := pc.ReadFrom(buf)
			require.NoError(t, err)
			assert.Equal(t, "ping", string(buf[:n]))
			_, err = pc.WriteTo([]byte("pong"), from)
			require.NoError(t, err)
			n, err = conn.Read(buf)
			require.NoError(t, err)
			assert.Equal(t, "pong", string(buf[:n]))
		})
	}
}

// TestShapesLinux checks that on Linux the Configs the tests take from
// Platform are the ones they have always applied: partial ones, and each
// field at the kernel's limits.
func TestShapesLinux(t *testing.T) {
	want := []keepalive.Config{
		{},
		{Idle: 42 * time.Second},
		{Interval: 7 * time.Second, Count: 4},
		{UserTimeout: 12345 * time.Millisecond},
		{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second},
		{Idle: time.Second},
		{Idle: 32767 * time.Second},
		{Interval: time.Second},
		{Interval: 32767 * time.Second},
		{Count: 1},
		{Count: 127},
		{UserTimeout: time.Millisecond},
		{UserTimeout: maxUserTimeout},
		{Idle: time.Second, Interval: time.Second, Count: 1, UserTimeout: time.Millisecond},
		{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127, UserTimeout: maxUserTimeout},
	}
	var got []keepalive.Config
	for _, s := range shapes(t) {
		got = append(got, s.c)
	}
	assert.Equal(t, want, got)
}

// keepaliveHook returns a Control hook that sets every keepalive option
// itself, as a caller's own hook might.
func keepaliveHook(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		for _, o := range []struct{ level, opt, v int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 99},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 98},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 97},
			{unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 96000},
		} {
			if serr = unix.SetsockoptInt(int(fd), o.level, o.opt, o.v); serr != nil {
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// TestCallerHookKeepAliveOverruled checks that the Config decides every
// option, the zero fields too, whatever the caller's own hook set: an
// option the hook set that the Config leaves zero is back at the system
// default, and Off turns keepalive off.
func TestCallerHookKeepAliveOverruled(t *testing.T) {
	var plain net.ListenConfig
	plain.SetMultipathTCP(false)
	target := listen(t, &keepalive.ListenConfig{NetListenConfig: &plain})
	for _, c := range []keepalive.Config{
		{},
		{Interval: 7 * time.Second},
		{Idle: 31 * time.Second, Count: 4, UserTimeout: 40 * time.Second},
		{Off: true, Count: 4},
	} {
		want := expect(t, c)
		want.KeepAlive = !c.Off
		t.Run("Dialer "+configName(c), func(t *testing.T) {
			for name, nd := range map[string]*net.Dialer{
				"Control":        {Control: keepaliveHook},
				"ControlContext": {ControlContext: func(_ context.Context, n, a string, rc syscall.RawConn) error { return keepaliveHook(n, a, rc) }},
			} {
				d := &keepalive.Dialer{NetDialer: nd, Config: c}
				dialed, _ := pair(t, target, d.DialContext)
				assert.Equal(t, want, readKernel(t, dialed), "%s DialContext", name)
				cnd, err := d.ConfiguredNetDialer()
				require.NoError(t, err)
				dialed, _ = pair(t, target, cnd.DialContext)
				assert.Equal(t, want, readKernel(t, dialed), "%s ConfiguredNetDialer", name)
			}
		})
		t.Run("ListenConfig "+configName(c), func(t *testing.T) {
			base := &net.ListenConfig{Control: keepaliveHook}
			base.SetMultipathTCP(false)
			ln := listen(t, &keepalive.ListenConfig{NetListenConfig: base, Config: c})
			assert.Equal(t, want, readSocket(t, ln.(*net.TCPListener)), "listener")
			_, accepted := pair(t, ln, plainDial)
			assert.Equal(t, want, readKernel(t, accepted), "accepted")
		})
	}
}
