//go:build !js && !plan9 && !wasip1

package keepalive_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// The tests of Dialer (and of ListenConfig on the other end), on every
// platform that has socket options, with the Configs of shapes.

// TestDialAndAcceptValues checks that both ends of every connection hold
// exactly the Config, through every way to dial and to listen.
func TestDialAndAcceptValues(t *testing.T) {
	sys := systemValues(t)
	t.Logf("system defaults: %+v", sys)
	for _, tt := range shapes(t) {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.c.WithDefaults(sys)
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
						assertHolds(t, dialed, want, "dialed")
						assertHolds(t, accepted, want, "accepted")
					})
				}
			}
		})
	}
}

// TestDialNetworks checks "tcp4" and "tcp6" as well as "tcp".
func TestDialNetworks(t *testing.T) {
	c := fullConfig(t)
	want := c.WithDefaults(systemValues(t))
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
					assertHolds(t, dialed, want, "dialed")
					assertHolds(t, accepted, want, "accepted")
				})
			}
		})
	}
}

// TestConfiguredNetDialerTLS checks the *net.Dialer of ConfiguredNetDialer
// where only a *net.Dialer is accepted: tls.Dialer and tls.DialWithDialer.
func TestConfiguredNetDialerTLS(t *testing.T) {
	serverTLS, clientTLS := tlsConfigs(t)
	c := fullConfig(t)
	want := c.WithDefaults(systemValues(t))
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
			assertHolds(t, dialed, want, "dialed")
			assertHolds(t, accepted, want, "accepted")
		})
	}
}

// TestDialTimeout checks that DialTimeout's timeout bounds the dial and
// that zero or a negative timeout sets none.
func TestDialTimeout(t *testing.T) {
	c := configFor(t, 31*time.Second, 0, 0, 0)
	want := c.WithDefaults(systemValues(t))
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
		assertHolds(t, dialed, want, fmt.Sprintf("timeout %v", timeout))
		assert.Equal(t, dialed.LocalAddr().String(), accepted.RemoteAddr().String())
	}
}

// TestDialerBaseKeepAlive checks that the Config wins over the base
// dialer's KeepAlive and KeepAliveConfig: with KeepAlive 0 the standard
// library writes 15 s / 15 s / 9 after connect.
func TestDialerBaseKeepAlive(t *testing.T) {
	sys := systemValues(t)
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
		for _, tt := range trapShapes(t) {
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
					assertHolds(t, dialed, tt.c.WithDefaults(sys), m.name)
				}
				if b.nd != nil {
					assert.Equal(t, before, *b.nd, "NetDialer modified")
				}
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
	c := fullConfig(t)
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

// TestDialerConcurrent uses one Dialer, and one *net.Dialer from
// ConfiguredNetDialer, from many goroutines at once; run with -race.
func TestDialerConcurrent(t *testing.T) {
	const workers, perWorker = 8, 25
	c := fullConfig(t)
	want := c.WithDefaults(systemValues(t))
	readable := getError(t) == ""
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
				if !readable {
					continue
				}
				s, err := keepalive.Get(conn)
				if err != nil {
					errs <- fmt.Errorf("%s: Get: %w", m.name, err)
				} else if s != want {
					errs <- fmt.Errorf("%s: Get: got %+v; want %+v", m.name, s, want)
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
		assert.Equal(t, kernelOf(t, want), readSocket(t, tcpConn(t, conn)), "dialed")
		n++
	}
	assert.Equal(t, workers*perWorker, n, "dialed")
	for range n {
		select {
		case conn := <-accepted:
			t.Cleanup(func() { conn.Close() })
			assert.Equal(t, kernelOf(t, want), readSocket(t, tcpConn(t, conn)), "accepted")
		case err := <-acceptErr:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			require.FailNow(t, "accept timed out")
		}
	}
}

// TestOff checks that a Config with Off dials and listens with keepalive
// off on both ends, its other fields set for when it is turned on again.
// Where the system probes every connection anyway
// (net.inet.tcp.always_keepalive), every dial fails, saying so.
func TestOff(t *testing.T) {
	c := offConfig(t)
	want := c.WithDefaults(systemValues(t))
	ln := listen(t, &keepalive.ListenConfig{Config: c})
	d := &keepalive.Dialer{Config: c}
	for _, m := range dialMethods(t, d) {
		t.Run(m.name, func(t *testing.T) {
			if wantPlatform(t).keepAliveForced {
				conn, err := m.dial(context.Background(), "tcp", ln.Addr().String())
				if conn != nil {
					conn.Close()
				}
				forcedOff(t, err, "dial")
				return
			}
			dialed, accepted := pair(t, ln, m.dial)
			assertHolds(t, dialed, want, "dialed")
			assertHolds(t, accepted, want, "accepted")
		})
	}
}
