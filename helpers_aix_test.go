package keepalive_test

import (
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// AIX's own pieces of the helpers (see helpers_test.go).

// kernel is what getsockopt reports for a socket, read independently of
// keepalive.Get.
type kernel = sockopts.Values

// hostFacts finds nothing: AIX's answers do not depend on the host.
func hostFacts() (host, error) { return host{}, nil }

// readSocket reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT of any TCP socket, a listening one included.
func readSocket(t testing.TB, sc syscall.Conn) kernel {
	t.Helper()
	k, err := sockopts.Read(sc)
	require.NoError(t, err, "getsockopt")
	return k
}

// kernelOf returns what readSocket reports for a socket of which Get
// reports c. AIX has no user timeout.
func kernelOf(_ testing.TB, c keepalive.Config) kernel {
	return kernel{KeepAlive: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count}
}
