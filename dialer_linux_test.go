package keepalive_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
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

// valueConfigs are the Configs every way of configuring a socket must
// reproduce exactly: the zero Config, partial ones and the kernel's limits.
var valueConfigs = []struct {
	name string
	c    keepalive.Config
}{
	{"zero", keepalive.Config{}},
	{"only Idle", keepalive.Config{Idle: 42 * time.Second}},
	{"only Interval and Count", keepalive.Config{Interval: 7 * time.Second, Count: 4}},
	{"only UserTimeout", keepalive.Config{UserTimeout: 12345 * time.Millisecond}},
	{"all set", keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}},
	{"Idle 1s", keepalive.Config{Idle: time.Second}},
	{"Idle 32767s", keepalive.Config{Idle: 32767 * time.Second}},
	{"Interval 1s", keepalive.Config{Interval: time.Second}},
	{"Interval 32767s", keepalive.Config{Interval: 32767 * time.Second}},
	{"Count 1", keepalive.Config{Count: 1}},
	{"Count 127", keepalive.Config{Count: 127}},
	{"UserTimeout 1ms", keepalive.Config{UserTimeout: time.Millisecond}},
	{"UserTimeout MaxInt32 ms", keepalive.Config{UserTimeout: maxUserTimeout}},
	{"all minimum", keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1, UserTimeout: time.Millisecond}},
	{"all maximum", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127, UserTimeout: maxUserTimeout}},
}

type dialFunc = func(ctx context.Context, network, address string) (net.Conn, error)

type namedDial struct {
	name string
	dial dialFunc
}

// dialMethods returns every way d dials, each as a dialFunc; DialAddress
// always dials "tcp".
func dialMethods(t testing.TB, d *keepalive.Dialer) []namedDial {
	t.Helper()
	nd, err := d.ConfiguredNetDialer()
	require.NoError(t, err)
	return []namedDial{
		{"Dial", func(_ context.Context, network, address string) (net.Conn, error) {
			return d.Dial(network, address)
		}},
		{"DialContext", d.DialContext},
		{"DialTimeout", func(_ context.Context, network, address string) (net.Conn, error) {
			return d.DialTimeout(network, address, 10*time.Second)
		}},
		{"DialAddress", func(ctx context.Context, _, address string) (net.Conn, error) {
			return d.DialAddress(ctx, address)
		}},
		{"ConfiguredNetDialer", nd.DialContext},
	}
}

// TestDialAndAcceptValues checks that both ends of every connection report
// exactly the Config, through every way to dial and to listen.
func TestDialAndAcceptValues(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	t.Logf("system defaults: Idle %v, Interval %v, Count %d", sys.Idle, sys.Interval, sys.Count)
	for _, tt := range valueConfigs {
		t.Run(tt.name, func(t *testing.T) {
			want := expect(t, tt.c)
			lnp, err := keepalive.Listen("tcp", "127.0.0.1:0", tt.c)
			require.NoError(t, err)
			t.Cleanup(func() { lnp.Close() })
			listeners := []struct {
				name string
				ln   net.Listener
			}{
				{"ListenConfig", listen(t, &keepalive.ListenConfig{Config: tt.c})},
				{"Listen", lnp},
			}
			d := &keepalive.Dialer{Config: tt.c}
			for _, l := range listeners {
				for _, m := range dialMethods(t, d) {
					t.Run(l.name+"/"+m.name, func(t *testing.T) {
						dialed, accepted := pair(t, l.ln, m.dial)
						assertBothEnds(t, want, dialed, accepted)
					})
				}
			}
		})
	}
}

// TestDialNetworks checks "tcp4" and "tcp6" as well as "tcp".
func TestDialNetworks(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	want := expect(t, c)
	for _, tt := range []struct{ network, address string }{
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
	} {
		t.Run(tt.network, func(t *testing.T) {
			lc := &keepalive.ListenConfig{Config: c}
			ln, err := lc.Listen(context.Background(), tt.network, tt.address)
			if tt.network == "tcp6" && err != nil {
				skipOutsideCI(t, "no IPv6 loopback: %v", err)
			}
			require.NoError(t, err)
			t.Cleanup(func() { ln.Close() })
			d := &keepalive.Dialer{Config: c}
			nd, err := d.ConfiguredNetDialer()
			require.NoError(t, err)
			for _, m := range []namedDial{{"DialContext", d.DialContext}, {"ConfiguredNetDialer", nd.DialContext}} {
				t.Run(m.name, func(t *testing.T) {
					dialed, accepted := pair(t, ln, func(ctx context.Context, _, address string) (net.Conn, error) {
						return m.dial(ctx, tt.network, address)
					})
					assert.Equal(t, want, readKernel(t, dialed), "dialed")
					assert.Equal(t, want, readKernel(t, accepted), "accepted")
				})
			}
		})
	}
}

// TestConfiguredNetDialerTLS checks the *net.Dialer of ConfiguredNetDialer
// where only a *net.Dialer is accepted: tls.Dialer and tls.DialWithDialer.
func TestConfiguredNetDialerTLS(t *testing.T) {
	serverTLS, clientTLS := tlsConfigs(t)
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	want := expect(t, c)
	ln := handshakeListener{tls.NewListener(listen(t, &keepalive.ListenConfig{Config: c}), serverTLS)}
	d := &keepalive.Dialer{Config: c}
	nd, err := d.ConfiguredNetDialer()
	require.NoError(t, err)
	td := &tls.Dialer{NetDialer: nd, Config: clientTLS}
	for _, m := range []namedDial{
		{"tls.Dialer", td.DialContext},
		{"tls.DialWithDialer", func(_ context.Context, network, address string) (net.Conn, error) {
			return tls.DialWithDialer(nd, network, address, clientTLS)
		}},
	} {
		t.Run(m.name, func(t *testing.T) {
			dialed, accepted := pair(t, ln, m.dial)
			require.IsType(t, &tls.Conn{}, dialed)
			require.IsType(t, &tls.Conn{}, accepted)
			assert.Equal(t, want, readKernel(t, dialed.(*tls.Conn).NetConn()), "dialed")
			assert.Equal(t, want, readKernel(t, accepted.(*tls.Conn).NetConn()), "accepted")
			assert.Equal(t, asConfig(want), mustGet(t, dialed), "Get dialed")
			assert.Equal(t, asConfig(want), mustGet(t, accepted), "Get accepted")
		})
	}
}

// TestDialTimeout checks that DialTimeout's timeout bounds the dial and
// that zero or a negative timeout sets none.
func TestDialTimeout(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second}
	ln := listen(t, &keepalive.ListenConfig{})
	d := &keepalive.Dialer{Config: c}

	conn, err := d.DialTimeout("tcp", ln.Addr().String(), time.Nanosecond)
	if conn != nil {
		conn.Close()
	}
	var nerr net.Error
	require.ErrorAs(t, err, &nerr)
	assert.True(t, nerr.Timeout(), "Timeout() of %v", err)
	assertFirstAccept(t, ln)

	for _, timeout := range []time.Duration{0, -time.Second} {
		dialed, accepted := pair(t, ln, func(_ context.Context, network, address string) (net.Conn, error) {
			return d.DialTimeout(network, address, timeout)
		})
		assert.Equal(t, expect(t, c), readKernel(t, dialed), "timeout %v", timeout)
		assert.Equal(t, dialed.LocalAddr().String(), accepted.RemoteAddr().String())
	}
}

// trapConfigs have zero fields, which the standard library's 15 s / 15 s / 9
// would fill, and set fields, which it would overwrite.
var trapConfigs = []struct {
	name string
	c    keepalive.Config
}{
	{"zero", keepalive.Config{}},
	{"only Idle", keepalive.Config{Idle: 31 * time.Second}},
	{"all set", keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}},
}

// TestDialerBaseKeepAlive checks that the Config wins over the base
// dialer's KeepAlive and KeepAliveConfig: with KeepAlive 0 the standard
// library writes 15 s / 15 s / 9 after connect.
func TestDialerBaseKeepAlive(t *testing.T) {
	bases := []struct {
		name string
		nd   *net.Dialer
	}{
		{"nil", nil},
		{"KeepAlive 0", &net.Dialer{}},
		{"KeepAlive 30s", &net.Dialer{KeepAlive: 30 * time.Second}},
		{"KeepAliveConfig 20s 20s 3", &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 20 * time.Second, Interval: 20 * time.Second, Count: 3}}},
		{"KeepAliveConfig disabled", &net.Dialer{KeepAlive: -1, KeepAliveConfig: net.KeepAliveConfig{Idle: -1, Interval: -1, Count: -1}}},
	}
	ln := listen(t, &keepalive.ListenConfig{})
	for _, b := range bases {
		for _, tt := range trapConfigs {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				var before net.Dialer
				if b.nd != nil {
					before = *b.nd
				}
				d := &keepalive.Dialer{NetDialer: b.nd, Config: tt.c}
				nd, err := d.ConfiguredNetDialer()
				require.NoError(t, err)
				for _, m := range []namedDial{{"DialContext", d.DialContext}, {"ConfiguredNetDialer", nd.DialContext}} {
					dialed, _ := pair(t, ln, m.dial)
					assert.Equal(t, expect(t, tt.c), readKernel(t, dialed), m.name)
				}
				if b.nd != nil {
					assert.Equal(t, before, *b.nd, "NetDialer modified")
				}
			})
		}
	}
}

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

// TestCallerHookError checks that an error from the caller's hook fails the
// dial or listen with that error.
func TestCallerHookError(t *testing.T) {
	errHook := errors.New("hook refuses")
	fail := func(string, string, syscall.RawConn) error { return errHook }
	failCtx := func(context.Context, string, string, syscall.RawConn) error { return errHook }
	c := keepalive.Config{Idle: 31 * time.Second, UserTimeout: 40 * time.Second}
	sentinel := listen(t, &keepalive.ListenConfig{})

	dialers := []struct {
		name string
		nd   *net.Dialer
	}{
		{"Control", &net.Dialer{Control: fail}},
		{"ControlContext", &net.Dialer{ControlContext: failCtx}},
	}
	for _, b := range dialers {
		d := &keepalive.Dialer{NetDialer: b.nd, Config: c}
		for _, m := range dialMethods(t, d) {
			t.Run(b.name+"/"+m.name, func(t *testing.T) {
				conn, err := m.dial(context.Background(), "tcp", sentinel.Addr().String())
				if conn != nil {
					conn.Close()
				}
				assert.ErrorIs(t, err, errHook)
			})
		}
	}
	t.Run("ListenConfig", func(t *testing.T) {
		lc := &keepalive.ListenConfig{NetListenConfig: &net.ListenConfig{Control: fail}, Config: c}
		ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		if ln != nil {
			ln.Close()
		}
		assert.ErrorIs(t, err, errHook)
	})
	assertFirstAccept(t, sentinel)
}

// assertFirstAccept dials ln and checks that the connection accepted first
// is this one: no connection reached ln before.
func assertFirstAccept(t *testing.T, ln net.Listener) {
	t.Helper()
	dialed, accepted := pair(t, ln, plainDial)
	assert.Equal(t, dialed.LocalAddr().String(), accepted.RemoteAddr().String(), "a connection reached the listener before the check")
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

// exchange sends a message each way between a and b.
func exchange(t *testing.T, a, b net.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	require.NoError(t, a.SetDeadline(deadline))
	require.NoError(t, b.SetDeadline(deadline))
	buf := make([]byte, 16)
	for _, p := range [][2]net.Conn{{a, b}, {b, a}} {
		_, err := p[0].Write([]byte("ping"))
		require.NoError(t, err)
		n, err := p[1].Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "ping", string(buf[:n]))
	}
}

// TestDialerConcurrent uses one Dialer, and one *net.Dialer from
// ConfiguredNetDialer, from many goroutines at once; run with -race.
func TestDialerConcurrent(t *testing.T) {
	const workers, perWorker = 8, 25
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	want := expect(t, c)
	ln := listen(t, &keepalive.ListenConfig{Config: c})
	d := &keepalive.Dialer{NetDialer: &net.Dialer{Timeout: 10 * time.Second}, Config: c}
	methods := dialMethods(t, d)

	accepted := make(chan net.Conn, workers*perWorker)
	acceptErr := make(chan error, 1)
	go func() {
		for range workers * perWorker {
			conn, err := ln.Accept()
			if err != nil {
				acceptErr <- err
				return
			}
			accepted <- conn
		}
	}()

	dialed := make(chan net.Conn, workers*perWorker)
	errs := make(chan error, workers*perWorker)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				m := methods[(w+i)%len(methods)]
				conn, err := m.dial(context.Background(), "tcp", ln.Addr().String())
				if err != nil {
					errs <- fmt.Errorf("%s: %w", m.name, err)
					continue
				}
				dialed <- conn
				s, err := keepalive.Get(conn)
				if err != nil {
					errs <- fmt.Errorf("%s: Get: %w", m.name, err)
				} else if s != asConfig(want) {
					errs <- fmt.Errorf("%s: Get: got %+v; want %+v", m.name, s, asConfig(want))
				}
			}
		}()
	}
	wg.Wait()
	close(dialed)
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	n := 0
	for conn := range dialed {
		t.Cleanup(func() { conn.Close() })
		assert.Equal(t, want, readKernel(t, conn), "dialed")
		n++
	}
	assert.Equal(t, workers*perWorker, n, "dialed")
	for range n {
		select {
		case conn := <-accepted:
			t.Cleanup(func() { conn.Close() })
			assert.Equal(t, want, readKernel(t, conn), "accepted")
		case err := <-acceptErr:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "accept timed out")
		}
	}
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

// TestOff checks that a Config with Off dials and listens with keepalive
// off on both ends, its other fields set for when it is turned on again.
func TestOff(t *testing.T) {
	c := keepalive.Config{Off: true, Idle: 31 * time.Second, UserTimeout: 40 * time.Second}
	want := expect(t, c)
	want.KeepAlive = false
	ln := listen(t, &keepalive.ListenConfig{Config: c})
	d := &keepalive.Dialer{Config: c}
	for _, dm := range dialMethods(t, d) {
		t.Run(dm.name, func(t *testing.T) {
			dialed, accepted := pair(t, ln, dm.dial)
			assertBothEnds(t, want, dialed, accepted)
		})
	}
}
