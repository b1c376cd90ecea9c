//go:build !js && !plan9 && !wasip1

package keepalive_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestGetNew checks what Get reports for both ends of a connection on which
// nothing set keepalive: off, at the system's values, no user timeout but
// the system's; on where the system probes every connection
// (net.inet.tcp.always_keepalive), although SO_KEEPALIVE is off. Where the
// values cannot be read back, Get fails, saying why.
func TestGetNew(t *testing.T) {
	w := wantPlatform(t)
	sys := systemValues(t)
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	dialed, accepted := pair(t, ln, plainDial)
	for _, e := range ends(dialed, accepted) {
		t.Run(e.name, func(t *testing.T) {
			untouched := keepalive.Config{Off: true}.WithDefaults(sys)
			assert.Equal(t, kernelOf(t, untouched), readSocket(t, tcpConn(t, e.conn)), "getsockopt")
			got, err := keepalive.Get(e.conn)
			if why := getError(t); why != "" {
				assert.ErrorContains(t, err, why)
				return
			}
			require.NoError(t, err)
			untouched.Off = !w.keepAliveForced
			assert.Equal(t, untouched, got)
		})
	}
}
