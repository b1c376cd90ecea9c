package keepalive_test

import (
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// The own pieces of the helpers (see helpers_test.go) of illumos and
// Oracle Solaris, where Interval and Count stand for one keepalive abort
// threshold (abortthreshold.go).

// kernel is what getsockopt reports for a socket, read independently of
// keepalive.Get.
type kernel = sockopts.Values

// hostFacts asks a new socket whether the system has TCP_KEEPINTVL and
// TCP_KEEPCNT (illumos, and Oracle Solaris 11.4 and later).
func hostFacts() (host, error) {
	v, err := newSocketValues()
	return host{intervalCount: v.IntervalCount}, err
}

// newSocketValues reads a new TCP socket, which has the system's values.
func newSocketValues() (kernel, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return kernel{}, err
	}
	defer ln.Close()
	return sockopts.Read(ln.(*net.TCPListener))
}

// newSocketAbort reads the keepalive abort threshold of a new socket: the
// system's.
func newSocketAbort(t testing.TB) time.Duration {
	t.Helper()
	v, err := newSocketValues()
	require.NoError(t, err, "getsockopt of a new socket")
	return v.AbortThreshold
}

// readSocket reads SO_KEEPALIVE, TCP_KEEPALIVE_THRESHOLD, TCP_KEEPINTVL,
// TCP_KEEPCNT, TCP_KEEPALIVE_ABORT_THRESHOLD, TCP_ABORT_THRESHOLD and
// SO_PROTOTYPE of any TCP socket, a listening one included.
func readSocket(t testing.TB, sc syscall.Conn) kernel {
	t.Helper()
	k, err := sockopts.Read(sc)
	require.NoError(t, err, "getsockopt")
	return k
}

// kernelOf returns what readSocket reports for a socket of which Get
// reports c: the keepalive abort threshold is Interval*Count, or the
// system's where the socket sets neither.
func kernelOf(t testing.TB, c keepalive.Config) kernel {
	t.Helper()
	abort := c.Interval * time.Duration(c.Count)
	if c.Interval == 0 && c.Count == 0 {
		abort = newSocketAbort(t)
	}
	return kernel{
		KeepAlive:      !c.Off,
		Idle:           c.Idle,
		Interval:       c.Interval,
		Count:          c.Count,
		IntervalCount:  thisHost(t).intervalCount,
		AbortThreshold: abort,
		UserTimeout:    c.UserTimeout,
		Protocol:       unix.IPPROTO_TCP,
	}
}
