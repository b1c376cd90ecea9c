//go:build !js && !plan9 && !wasip1

package keepalive_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// The tests of Set and Disable, on every platform that has socket options,
// with the Configs of shapes: each end of a loopback connection must hold
// the Config, as the test's own getsockopt calls and Get read it back.

// TestSet checks Set on both ends of connections the standard library made:
// one where it set its own keepalive (15s / 15s / 9), one where it set
// nothing. A zero field puts the system default back, so the socket ends
// with the same values whatever it held before.
func TestSet(t *testing.T) {
	w := wantPlatform(t)
	sys := systemValues(t)
	bases := []struct {
		name   string
		lc     *net.ListenConfig
		dial   dialFunc
		before *keepalive.Config // what Get reports before Set, where known
	}{
		{"net.Dial", &net.ListenConfig{}, (&net.Dialer{}).DialContext, w.goDialed},
		{"KeepAlive -1", &net.ListenConfig{KeepAlive: -1}, plainDial, &keepalive.Config{Off: true}},
	}
	for _, b := range bases {
		ln, err := b.lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		for _, tt := range shapes(t) {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				dialed, accepted := pair(t, ln, b.dial)
				for _, e := range ends(dialed, accepted) {
					if b.before != nil {
						require.Equal(t, kernelOf(t, b.before.WithDefaults(sys)), readSocket(t, tcpConn(t, e.conn)), "before Set, %s", e.name)
					}
					fill := zeroFill(t, e.conn, sys)
					require.NoError(t, keepalive.Set(e.conn, tt.c), e.name)
					assertHolds(t, e.conn, tt.c.WithDefaults(fill), e.name)
				}
			})
		}
	}
}

// TestSetGetRoundTrip checks that Get after Set returns the Config with its
// zero fields at the system defaults, whatever the socket held before, so
// that DetectionTime of the Config is the socket's. Where the platform
// cannot read the values back, the test's own getsockopt calls check what
// they can and Get must fail.
func TestSetGetRoundTrip(t *testing.T) {
	p, w := keepalive.Platform(), wantPlatform(t)
	sys := systemValues(t)
	ln := listen(t, &keepalive.ListenConfig{})
	dialed, _ := pair(t, ln, plainDial)
	var configs []keepalive.Config
	for _, tt := range shapes(t) {
		configs = append(configs, tt.c)
		if !w.keepAliveForced {
			off := tt.c
			off.Off = true
			configs = append(configs, off)
		}
	}
	readable := getError(t) == ""
	// Every Config after every other: a zero field must undo what the one
	// before set.
	for _, prev := range configs {
		for _, c := range configs {
			require.NoError(t, keepalive.Set(dialed, prev))
			fill := zeroFill(t, dialed, sys)
			require.NoError(t, keepalive.Set(dialed, c), "%v after %v", c, prev)
			want := c.WithDefaults(fill)
			if !assert.Equal(t, kernelOf(t, want), readSocket(t, tcpConn(t, dialed)), "getsockopt, %v after %v", c, prev) {
				return
			}
			if !readable {
				continue
			}
			got, err := keepalive.Get(dialed)
			require.NoError(t, err)
			if !assert.Equal(t, want, got, "%v after %v", c, prev) {
				return
			}
			if p.DefaultsReadable {
				// The natural call reads the defaults for the zero
				// fields: the time the socket takes.
				dt, err := c.DetectionTime()
				require.NoError(t, err)
				assert.Equal(t, detectionTime(t, got, keepalive.Config{}), dt, "DetectionTime of %v", c)
			}
		}
	}
	if !readable {
		_, err := keepalive.Get(dialed)
		assert.ErrorIs(t, err, errors.ErrUnsupported)
		assert.ErrorContains(t, err, getError(t))
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
	c := fullConfig(t)
	sys := systemValues(t)
	dialed, accepted := pair(t, ln, td.DialContext)
	for _, e := range ends(dialed, accepted) {
		t.Run(e.name, func(t *testing.T) {
			tc, ok := e.conn.(*tls.Conn)
			require.True(t, ok, "got %T", e.conn)
			fill := zeroFill(t, tc, sys)
			require.NoError(t, keepalive.Set(tc, c))
			assertHolds(t, tc, c.WithDefaults(fill), "after Set")
			err := keepalive.Disable(tc)
			if forcedOff(t, err, "Disable") {
				assertHolds(t, tc, c.WithDefaults(fill), "after a failed Disable")
				return
			}
			require.NoError(t, err)
			off := c
			off.Off = true
			assertHolds(t, tc, off.WithDefaults(fill), "after Disable")
		})
	}
	exchange(t, dialed, accepted)
}

// TestDisable checks that Disable turns SO_KEEPALIVE off and leaves the
// values, which a later Set brings back. Where the system probes every
// connection anyway (net.inet.tcp.always_keepalive), Disable fails, saying
// so, and leaves the socket as it was.
func TestDisable(t *testing.T) {
	c := fullConfig(t)
	want := c.WithDefaults(systemValues(t))
	ln := listen(t, &keepalive.ListenConfig{Config: c})
	d := &keepalive.Dialer{Config: c}
	dialed, accepted := pair(t, ln, d.DialContext)
	for _, e := range ends(dialed, netConner{accepted}) {
		t.Run(e.name, func(t *testing.T) {
			err := keepalive.Disable(e.conn)
			if forcedOff(t, err, "Disable") {
				assertHolds(t, e.conn, want, "after a failed Disable")
				return
			}
			require.NoError(t, err)
			off := want
			off.Off = true
			assertHolds(t, e.conn, off, "after Disable")

			require.NoError(t, keepalive.Disable(e.conn), "twice")
			assertHolds(t, e.conn, off, "after Disable twice")

			require.NoError(t, keepalive.Set(e.conn, c))
			assertHolds(t, e.conn, want, "Set after Disable")
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
	err := keepalive.Set(dialed, keepalive.Config{})
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
	dialed, _ := pair(t, ln, (&net.Dialer{}).DialContext) // Go's own keepalive, on
	off := configFor(t, 0, 9*time.Second, 0, 20*time.Second)
	off.Off = true
	fill := zeroFill(t, dialed, systemValues(t))
	err := keepalive.Set(dialed, off)
	if forcedOff(t, err, "Set") {
		return
	}
	require.NoError(t, err)
	assertHolds(t, dialed, off.WithDefaults(fill), "after Set")
	assert.Equal(t, time.Duration(math.MaxInt64), detectionTime(t, off, keepalive.Config{}))
	if getError(t) == "" {
		got, err := keepalive.Get(dialed)
		require.NoError(t, err)
		assert.True(t, got.Off)
		assert.Equal(t, time.Duration(math.MaxInt64), detectionTime(t, got, keepalive.Config{}))
	}
}
