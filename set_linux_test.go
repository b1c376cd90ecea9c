package keepalive_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// overlay returns what the kernel must report after Set(c) on a socket
// that reported before: keepalive on, c's non-zero fields, the rest as they
// were.
func overlay(before kernel, c keepalive.Config) kernel {
	k := before
	k.KeepAlive = true
	if c.Idle != 0 {
		k.Idle = c.Idle
	}
	if c.Interval != 0 {
		k.Interval = c.Interval
	}
	if c.Count != 0 {
		k.Count = c.Count
	}
	if c.UserTimeout != 0 {
		k.UserTimeout = c.UserTimeout
	}
	return k
}

// TestSet checks Set on both ends of connections the standard library made:
// one where it set its own 15 s / 15 s / 9, one where it set nothing.
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
					want := overlay(b.before, tt.c)
					assert.Equal(t, want, readKernel(t, conn))
					assert.Equal(t, settings(want), mustGet(t, conn), "Get")
				}
			})
		}
	}
}

// TestSetGetRoundTrip checks that Get returns every field Set set, and
// that a second Set replaces the first.
func TestSetGetRoundTrip(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	dialed, _ := pair(t, ln, plainDial)
	for _, tt := range valueConfigs {
		if tt.c.Idle == 0 || tt.c.Interval == 0 || tt.c.Count == 0 || tt.c.UserTimeout == 0 {
			continue
		}
		t.Run(tt.name, func(t *testing.T) {
			require.NoError(t, keepalive.Set(dialed, tt.c))
			assert.Equal(t, keepalive.Settings{Enabled: true, Config: tt.c}, mustGet(t, dialed))
		})
	}
	// Every field of a partial Config round-trips too.
	for _, tt := range valueConfigs {
		t.Run("partial/"+tt.name, func(t *testing.T) {
			require.NoError(t, keepalive.Set(dialed, tt.c))
			got := mustGet(t, dialed)
			assert.True(t, got.Enabled)
			if tt.c.Idle != 0 {
				assert.Equal(t, tt.c.Idle, got.Config.Idle)
			}
			if tt.c.Interval != 0 {
				assert.Equal(t, tt.c.Interval, got.Config.Interval)
			}
			if tt.c.Count != 0 {
				assert.Equal(t, tt.c.Count, got.Config.Count)
			}
			if tt.c.UserTimeout != 0 {
				assert.Equal(t, tt.c.UserTimeout, got.Config.UserTimeout)
			}
		})
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
			assert.Equal(t, settings(want), mustGet(t, tc), "Get")
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
			assert.Equal(t, settings(off), mustGet(t, conn), "Get")

			require.NoError(t, keepalive.Disable(conn), "twice")
			assert.Equal(t, off, readKernel(t, tc), "twice")

			require.NoError(t, keepalive.Set(conn, keepalive.Config{}))
			assert.Equal(t, expect(t, c), readKernel(t, tc), "Set after Disable")
		})
	}
}
