//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package keepalive_test

import (
	"errors"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// What the helpers of macOS and the BSDs share (see helpers_test.go); each
// system's file says which options internal/sockopts reads there and what
// the tests find out about the host.

// kernel is what getsockopt reports for a socket, read independently of
// keepalive.Get.
type kernel = sockopts.Values

// readSocket reads SO_KEEPALIVE and the system's keepalive options of any
// TCP socket, a listening one included, inside Control, and asserts
// nothing inside the closure.
func readSocket(t testing.TB, sc syscall.Conn) kernel {
	t.Helper()
	k, err := sockopts.Read(sc)
	require.NoError(t, err, "getsockopt")
	return k
}

// alwaysKeepAlive reads the sysctl net.inet.tcp.always_keepalive: at 1 the
// kernel probes every connection whatever SO_KEEPALIVE says. A system
// without it (NetBSD) probes only the connections that turn keepalive on.
func alwaysKeepAlive() (bool, error) {
	n, err := unix.SysctlUint32("net.inet.tcp.always_keepalive")
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return n != 0, err
}
