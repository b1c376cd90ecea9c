package integration_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// clientConfig is what every client dials with: values no default has, so a
// socket that reports them was set by the library.
var clientConfig = keepalive.Config{Idle: 37 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 65 * time.Second}

// serverConfig is what the in-process servers listen with.
var serverConfig = keepalive.Config{Idle: 41 * time.Second, Interval: 9 * time.Second, Count: 5, UserTimeout: 73 * time.Second}

// kernel is what getsockopt reports for a socket, read independently of
// keepalive.Get.
type kernel = sockopts.Values

// want returns what the kernel must report for a socket that carries c,
// every field of which is set.
func want(c keepalive.Config) kernel {
	return kernel{KeepAlive: true, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
}

// readSockopts reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
// TCP_USER_TIMEOUT and SO_PROTOCOL of the TCP socket in conn, which may wrap
// it through NetConn (as *tls.Conn does). It asserts nothing, so that it can
// run on a client's own goroutine.
func readSockopts(conn net.Conn) (kernel, error) {
	for {
		w, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = w.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return kernel{}, fmt.Errorf("want *net.TCPConn, got %T", conn)
	}
	return sockopts.Read(tc)
}

// readKernel is readSockopts for the test goroutine.
func readKernel(t testing.TB, conn net.Conn) kernel {
	t.Helper()
	k, err := readSockopts(conn)
	require.NoError(t, err, "getsockopt")
	return k
}

// assertSocket checks that conn's socket carries c, as keepalive.Get reports
// it and as getsockopt does.
func assertSocket(t testing.TB, conn net.Conn, c keepalive.Config) {
	t.Helper()
	s, err := keepalive.Get(conn)
	require.NoError(t, err)
	assert.Equal(t, c, s, "keepalive.Get")
	assert.Equal(t, want(c), readKernel(t, conn), "getsockopt")
}

// dial is one call a client made through a recorder.
type dial struct {
	Method  string // the recorder method the client called
	Network string
	Address string
	// Timeout is the timeout DialTimeout was given, or the time left before
	// the context's deadline when DialContext or DialAddress was called;
	// zero for none.
	Timeout time.Duration
	Conn    net.Conn
	// AtDial is what the socket reported when the library's dialer returned
	// it, before the client could touch it.
	AtDial kernel
	// At is when the library's dialer returned.
	At time.Time
}

// recorder forwards each dial to the same method of a keepalive.Dialer and
// records the connection the client got, so a test can read back the very
// socket the client dialed.
type recorder struct {
	d *keepalive.Dialer

	mu    sync.Mutex
	dials []dial
	errs  []error
}

func newRecorder(c keepalive.Config) *recorder {
	return &recorder{d: &keepalive.Dialer{Config: c}}
}

func (r *recorder) record(method, network, address string, timeout time.Duration, conn net.Conn, err error) (net.Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.errs = append(r.errs, fmt.Errorf("%s %s: %w", method, address, err))
		return nil, err
	}
	k, kerr := readSockopts(conn)
	if kerr != nil {
		r.errs = append(r.errs, fmt.Errorf("%s %s: reading the new socket: %w", method, address, kerr))
	}
	r.dials = append(r.dials, dial{Method: method, Network: network, Address: address, Timeout: timeout, Conn: conn, AtDial: k, At: time.Now()})
	return conn, nil
}

func timeLeft(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return time.Until(dl)
	}
	return 0
}

func (r *recorder) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	left := timeLeft(ctx)
	conn, err := r.d.DialContext(ctx, network, address)
	return r.record("DialContext", network, address, left, conn, err)
}

func (r *recorder) DialAddress(ctx context.Context, address string) (net.Conn, error) {
	left := timeLeft(ctx)
	conn, err := r.d.DialAddress(ctx, address)
	return r.record("DialAddress", "tcp", address, left, conn, err)
}

func (r *recorder) Dial(network, address string) (net.Conn, error) {
	conn, err := r.d.Dial(network, address)
	return r.record("Dial", network, address, 0, conn, err)
}

func (r *recorder) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	conn, err := r.d.DialTimeout(network, address, timeout)
	return r.record("DialTimeout", network, address, timeout, conn, err)
}

// Dials returns the successful dials so far, and fails the test if a dial
// failed or its socket could not be read.
func (r *recorder) Dials(t testing.TB) []dial {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	require.Empty(t, r.errs, "dials through the recorder")
	return append([]dial(nil), r.dials...)
}

// only returns the one dial the client made.
func (r *recorder) only(t testing.TB) dial {
	t.Helper()
	dials := r.Dials(t)
	require.Len(t, dials, 1, "dials through the recorder")
	return dials[0]
}

// acceptRecorder is a net.Listener that records every accepted connection.
type acceptRecorder struct {
	net.Listener

	mu    sync.Mutex
	conns []net.Conn
}

func (l *acceptRecorder) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

// from returns the accepted connection whose peer is the local end of
// dialed, failing the test if there is none.
func (l *acceptRecorder) from(t testing.TB, dialed net.Conn) net.Conn {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if c.RemoteAddr().String() == dialed.LocalAddr().String() {
			return c
		}
	}
	require.Failf(t, "no accepted connection", "none from %v among %d accepted", dialed.LocalAddr(), len(l.conns))
	return nil
}

// listen starts a loopback listener that carries serverConfig and records
// what it accepts; the listener and every connection it accepted are closed
// at cleanup.
func listen(t testing.TB) *acceptRecorder {
	t.Helper()
	lc := keepalive.ListenConfig{Config: serverConfig}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &acceptRecorder{Listener: ln}
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.conns {
			c.Close()
		}
	})
	return r
}

// localPort returns the local port of conn.
func localPort(t testing.TB, conn net.Conn) int {
	t.Helper()
	a, ok := conn.LocalAddr().(*net.TCPAddr)
	require.True(t, ok, "local address %v", conn.LocalAddr())
	return a.Port
}
