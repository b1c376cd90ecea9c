package keepalive_test

import (
	"context"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestWindowsDialAndAccept checks both ends of connections made with a
// Dialer (DialContext, with and without a caller's hook, and through
// ConfiguredNetDialer) to a ListenConfig, which applies the Config to each
// accepted connection on Windows.
func TestWindowsDialAndAccept(t *testing.T) {
	assert.False(t, keepalive.Platform().AcceptInherits, "accepted sockets are configured one by one")
	for _, c := range windowsConfigs(thisHost(t)) {
		t.Run(configName(c), func(t *testing.T) {
			ln := listen(t, &keepalive.ListenConfig{Config: c})
			hooked := 0
			hook := func(network, address string, rc syscall.RawConn) error {
				hooked++
				return nil
			}
			nd, err := (&keepalive.Dialer{Config: c}).ConfiguredNetDialer()
			require.NoError(t, err)
			dials := []struct {
				source string
				dial   dialFunc
			}{
				{"DialContext", (&keepalive.Dialer{Config: c}).DialContext},
				{"DialContextHook", (&keepalive.Dialer{Config: c, NetDialer: &net.Dialer{Control: hook}}).DialContext},
				{"ConfiguredNetDialer", nd.DialContext},
			}
			for _, d := range dials {
				dialed, accepted := pair(t, ln, d.dial)
				checkApplied(t, d.source+"/dialed", dialed, c)
				checkApplied(t, "ListenConfig/accepted", accepted, c)
			}
			assert.Equal(t, 1, hooked, "the caller's hook ran")
		})
	}
}

// TestWindowsControl checks Config.Control as the hook of a net.Dialer,
// on the dialed socket, and of a net.ListenConfig, on the listening socket.
func TestWindowsControl(t *testing.T) {
	for _, c := range windowsConfigs(thisHost(t)) {
		t.Run(configName(c), func(t *testing.T) {
			lc := net.ListenConfig{KeepAlive: -1, Control: c.Control}
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			require.NoError(t, err)
			t.Cleanup(func() { ln.Close() })
			tl := ln.(*net.TCPListener)
			assert.Equal(t, wantKernel(t, c), readSocket(t, tl), "listener")
			hold(t, "Control/listener", c, ln.Addr(), nil)

			d := net.Dialer{KeepAlive: -1, Control: c.Control}
			dialed, _ := pair(t, ln, d.DialContext)
			checkApplied(t, "Control/dialed", dialed, c)
		})
	}
}
