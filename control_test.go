//go:build !js && !plan9 && !wasip1

package keepalive_test

import (
	"context"
	"net"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestConfigControl checks Config.Control as the hook of a net.ListenConfig,
// on the listening socket, and of a net.Dialer, on the dialed one; where
// accepted sockets inherit the listening socket's options (Linux), on the
// accepted one too.
func TestConfigControl(t *testing.T) {
	sys := systemValues(t)
	for _, tt := range shapes(t) {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.c.WithDefaults(sys)
			lc := net.ListenConfig{KeepAlive: -1, Control: tt.c.Control}
			// A plain TCP listener: a Multipath TCP socket (Linux's
			// default for listeners) has no user timeout.
			lc.SetMultipathTCP(false)
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			require.NoError(t, err)
			t.Cleanup(func() { ln.Close() })
			assertHolds(t, ln.(*net.TCPListener), want, "listener")

			d := net.Dialer{KeepAlive: -1, Control: tt.c.Control}
			dialed, accepted := pair(t, ln, d.DialContext)
			assertHolds(t, dialed, want, "dialed")
			if keepalive.Platform().AcceptInherits {
				assertHolds(t, accepted, want, "accepted")
			}
		})
	}
}
