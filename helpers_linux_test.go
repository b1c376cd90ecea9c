package keepalive_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// kernel is what getsockopt reports for a socket, read independently of
// keepalive.Get.
type kernel = sockopts.Values

// readKernel reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
// TCP_USER_TIMEOUT and SO_PROTOCOL inside Control and asserts nothing
// inside the closure.
func readKernel(t testing.TB, conn net.Conn) kernel {
	t.Helper()
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "want *net.TCPConn, got %T", conn)
	return readSocket(t, tc)
}

// readSocket is readKernel for any TCP socket, a listening one included.
func readSocket(t testing.TB, sc syscall.Conn) kernel {
	t.Helper()
	k, err := sockopts.Read(sc)
	require.NoError(t, err, "getsockopt")
	return k
}

// expect returns what the kernel must report for a socket configured with
// c: keepalive on, and each zero field at the system default.
func expect(t testing.TB, c keepalive.Config) kernel {
	t.Helper()
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	k := kernel{KeepAlive: true, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
	if k.Idle == 0 {
		k.Idle = sys.Idle
	}
	if k.Interval == 0 {
		k.Interval = sys.Interval
	}
	if k.Count == 0 {
		k.Count = sys.Count
	}
	return k
}

// listen starts a listener from lc on loopback, closed at cleanup.
func listen(t testing.TB, lc *keepalive.ListenConfig) net.Listener {
	t.Helper()
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair dials ln with dial and accepts the connection; both are closed at
// cleanup.
func pair(t testing.TB, ln net.Listener, dial func(ctx context.Context, network, address string) (net.Conn, error)) (dialed, accepted net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	dialed, err := dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { dialed.Close() })
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { r.c.Close() })
	return dialed, r.c
}

// getInt reads one integer socket option of the socket behind sc.
func getInt(t testing.TB, sc syscall.Conn, level, opt int) int {
	t.Helper()
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		v, gerr = unix.GetsockoptInt(int(fd), level, opt)
	}))
	require.NoError(t, gerr, "getsockopt(%d, %d)", level, opt)
	return v
}

// setInt sets one integer socket option on the socket behind sc.
func setInt(t testing.TB, sc syscall.Conn, level, opt, v int) {
	t.Helper()
	rc, err := sc.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), level, opt, v)
	}))
	require.NoError(t, serr, "setsockopt(%d, %d, %d)", level, opt, v)
}

// asConfig returns what keepalive.Get must report for a socket on which
// getsockopt reports k.
func asConfig(k kernel) keepalive.Config {
	return keepalive.Config{Idle: k.Idle, Interval: k.Interval, Count: k.Count, UserTimeout: k.UserTimeout, Off: !k.KeepAlive}
}

// mustGet is keepalive.Get for a connection that must be readable.
func mustGet(t testing.TB, conn net.Conn) keepalive.Config {
	t.Helper()
	s, err := keepalive.Get(conn)
	require.NoError(t, err)
	return s
}

// plainDial dials with the standard library's keepalive off, so the dialed
// socket keeps whatever the kernel gives it.
func plainDial(ctx context.Context, network, address string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	return d.DialContext(ctx, network, address)
}

// openFDs counts the entries of /proc/self/fd.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}

// tlsConfigs returns a server config with a throwaway self-signed
// certificate for 127.0.0.1 and a client config that trusts only it.
func tlsConfigs(t testing.TB) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "keepalive test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	server = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	return server, client
}

// handshakeListener is a TLS listener whose Accept completes the handshake,
// so that pair's dial, which handshakes too, returns.
type handshakeListener struct{ net.Listener }

func (l handshakeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.(*tls.Conn).HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// skipOutsideCI skips the test with the reason, or fails it when the
// environment variable CI is set: in CI every test must run.
func skipOutsideCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// mptcpListenConfig returns a net.ListenConfig with Multipath TCP on, and
// skips the test (fails it in CI) where the kernel gives a plain TCP socket
// for it.
func mptcpListenConfig(t *testing.T) *net.ListenConfig {
	t.Helper()
	lc := &net.ListenConfig{}
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	if p := getInt(t, ln.(*net.TCPListener), unix.SOL_SOCKET, unix.SO_PROTOCOL); p != unix.IPPROTO_MPTCP {
		skipOutsideCI(t, "Multipath TCP is not available (listener has SO_PROTOCOL %d; needs CONFIG_MPTCP and sysctl net.mptcp.enabled=1)", p)
	}
	return lc
}

// mptcpDialer returns a net.Dialer with Multipath TCP on and the standard
// library's keepalive off.
func mptcpDialer() *net.Dialer {
	d := &net.Dialer{KeepAlive: -1}
	d.SetMultipathTCP(true)
	return d
}

// multipath reports whether conn uses Multipath TCP, as the standard
// library sees it.
func multipath(t testing.TB, conn net.Conn) bool {
	t.Helper()
	mp, err := conn.(*net.TCPConn).MultipathTCP()
	require.NoError(t, err)
	return mp
}

// assertBothEnds checks that getsockopt and keepalive.Get report want on
// both the dialed and the accepted end of a connection.
func assertBothEnds(t testing.TB, want kernel, dialed, accepted net.Conn) {
	t.Helper()
	assert.Equal(t, want, readKernel(t, dialed), "dialed")
	assert.Equal(t, want, readKernel(t, accepted), "accepted")
	assert.Equal(t, asConfig(want), mustGet(t, dialed), "Get dialed")
	assert.Equal(t, asConfig(want), mustGet(t, accepted), "Get accepted")
}

// withDefaults returns c with each zero Idle, Interval and Count taken from
// sys: what Get reports after Set(c).
func withDefaults(c, sys keepalive.Config) keepalive.Config {
	if c.Idle == 0 {
		c.Idle = sys.Idle
	}
	if c.Interval == 0 {
		c.Interval = sys.Interval
	}
	if c.Count == 0 {
		c.Count = sys.Count
	}
	return c
}
