//go:build !js && !plan9 && !wasip1

package keepalive_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// The helpers of the tests that make connections and read them back: every
// platform but Plan 9, js/wasm and wasip1, which have no socket option to
// set (sockopt_other.go; TestPlatform and TestConfigValidate prove that
// every Config fails there). Each platform's own pieces are in
// helpers_GOOS_test.go:
//
//	type kernel
//		what the test's own getsockopt calls report for a socket
//	readSocket(t, sc syscall.Conn) kernel
//		reads it, a listening socket included, independently of the
//		package (internal/sockopts, or the Windows tests' own calls)
//	kernelOf(t, c keepalive.Config) kernel
//		what readSocket must report for a socket of which Get reports c

// skipOutsideCI skips the test with the reason, or fails it when the
// environment variable CI is set: in CI every test must run.
func skipOutsideCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// offConfig returns a Config that turns keepalive off with values for when
// it is turned on again: on Linux idle 31s and user timeout 40s.
func offConfig(t testing.TB) keepalive.Config {
	t.Helper()
	c := configFor(t, 31*time.Second, 0, 0, 40*time.Second)
	c.Off = true
	return c
}

// tcpConn returns the *net.TCPConn that conn is or wraps.
func tcpConn(t testing.TB, conn net.Conn) *net.TCPConn {
	t.Helper()
	for {
		nc, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = nc.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "want *net.TCPConn, got %T", conn)
	return tc
}

type dialFunc = func(ctx context.Context, network, address string) (net.Conn, error)

type namedDial struct {
	name string
	dial dialFunc
}

// dialMethods returns every way d dials, each as a dialFunc; DialAddress
// always dials "tcp".
func dialMethods(t testing.TB, d *keepalive.Dialer) []namedDial {
	t.Helper()
	nd, err := d.ConfiguredNetDialer()
	require.NoError(t, err)
	return []namedDial{
		{"Dial", func(_ context.Context, network, address string) (net.Conn, error) {
			return d.Dial(network, address)
		}},
		{"DialContext", d.DialContext},
		{"DialTimeout", func(_ context.Context, network, address string) (net.Conn, error) {
			return d.DialTimeout(network, address, 10*time.Second)
		}},
		{"DialAddress", func(ctx context.Context, _, address string) (net.Conn, error) {
			return d.DialAddress(ctx, address)
		}},
		{"ConfiguredNetDialer", nd.DialContext},
	}
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
func pair(t testing.TB, ln net.Listener, dial dialFunc) (dialed, accepted net.Conn) {
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

// loopbackPair dials a plain loopback listener with d, whose Config is
// applied to the dialed end, and accepts; all are closed at cleanup.
func loopbackPair(t testing.TB, d *keepalive.Dialer) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return pair(t, ln, d.DialContext)
}

// plainDial dials with the standard library's keepalive off, so the dialed
// socket keeps whatever the kernel gives it.
func plainDial(ctx context.Context, network, address string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	return d.DialContext(ctx, network, address)
}

// assertFirstAccept dials ln and checks that the connection accepted first
// is this one: no connection reached ln before.
func assertFirstAccept(t *testing.T, ln net.Listener) {
	t.Helper()
	dialed, accepted := pair(t, ln, plainDial)
	assert.Equal(t, dialed.LocalAddr().String(), accepted.RemoteAddr().String(), "a connection reached the listener before the check")
}

// exchange sends a message each way between a and b.
func exchange(t *testing.T, a, b net.Conn) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	require.NoError(t, a.SetDeadline(deadline))
	require.NoError(t, b.SetDeadline(deadline))
	buf := make([]byte, 16)
	for _, p := range [][2]net.Conn{{a, b}, {b, a}} {
		_, err := p[0].Write([]byte("ping"))
		require.NoError(t, err)
		n, err := p[1].Read(buf)
		require.NoError(t, err)
		assert.Equal(t, "ping", string(buf[:n]))
	}
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

// shape is a Config the behaviour tests apply, named for what it holds.
type shape struct {
	name string
	c    keepalive.Config
}

// trapShapes have zero fields, which the standard library's 15 s / 15 s / 9
// would fill, and set fields, which it would overwrite.
func trapShapes(t testing.TB) []shape {
	t.Helper()
	return []shape{
		{"zero", keepalive.Config{}},
		{"only Idle", configFor(t, 31*time.Second, 0, 0, 0)},
		{"all set", fullConfig(t)},
	}
}

// shapes returns the Configs every way of configuring a socket must
// reproduce exactly, built from Platform so that each holds only fields
// the platform sets, within its limits: the zero Config, partial ones,
// every field at once, each field at its least and its largest, and all at
// their least and their largest. On Linux they are the Configs the tests
// have always applied, the kernel's limits included.
//
// Where the kernel bounds Idle + Interval*Count (macOS and the BSDs) a
// field at its largest is lowered to fit the bound, each zero field at the
// system default; a shape that still breaks a rule across fields (the
// bound, or illumos's and Solaris's Interval*Count) is left out and
// logged.
func shapes(t testing.TB) []shape {
	t.Helper()
	p, w := keepalive.Platform(), wantPlatform(t)
	var sys keepalive.Config
	if w.span != 0 {
		sys = systemValues(t)
	}
	var out []shape
	add := func(name string, c keepalive.Config) {
		if c == (keepalive.Config{}) && name != "zero" {
			return // the platform sets none of its fields
		}
		if err := c.Validate(); err != nil {
			// Every field is within its own range: only a rule
			// across fields can refuse the shape.
			var fe *keepalive.FieldError
			require.ErrorAs(t, err, &fe, "shape %s %v", name, c)
			require.True(t, w.span != 0 || w.pair, "shape %s %v is refused on a platform with no rule across fields: %v", name, c, err)
			t.Logf("shape %s %v left out: %v", name, c, err)
			return
		}
		out = append(out, shape{name, c})
	}
	// within lowers c's field o, set at its largest, so that Idle +
	// Interval*Count, each zero field at the system default, fits the
	// platform's bound.
	within := func(c keepalive.Config, o string) keepalive.Config {
		if w.span == 0 {
			return c
		}
		f := c.WithDefaults(sys)
		switch o {
		case "Idle":
			if rest := f.Interval * time.Duration(f.Count); f.Idle > w.span-rest {
				c.Idle = fit(p.Idle, w.span-rest)
			}
		case "Interval":
			if n := time.Duration(f.Count); f.Interval > (w.span-f.Idle)/n {
				c.Interval = fit(p.Interval, (w.span-f.Idle)/n)
			}
		case "Count":
			if n := (w.span - f.Idle) / f.Interval; int64(f.Count) > int64(n) {
				c.Count = fitCount(p.Count, int(n))
			}
		}
		return c
	}
	// limit returns the Config with field o at its least or its largest,
	// where the platform sets o; the zero Config elsewhere.
	limit := func(o string, least bool) keepalive.Config {
		pick := func(f keepalive.FieldSupport) int64 {
			if least {
				return f.Min
			}
			return f.Max
		}
		var c keepalive.Config
		switch {
		case o == "Idle" && p.Idle.Settable:
			c.Idle = time.Duration(pick(p.Idle)) * p.Idle.Unit
		case o == "Interval" && p.Interval.Settable:
			c.Interval = time.Duration(pick(p.Interval)) * p.Interval.Unit
		case o == "Count" && p.Count.Settable:
			c.Count = int(pick(p.Count))
		case o == "UserTimeout" && p.UserTimeout.Settable:
			c.UserTimeout = time.Duration(pick(p.UserTimeout)) * p.UserTimeout.Unit
		}
		c = partner(t, c)
		if !least {
			c = within(c, o)
		}
		return c
	}

	add("zero", keepalive.Config{})
	add("only Idle", configFor(t, 42*time.Second, 0, 0, 0))
	add("only Interval and Count", configFor(t, 0, 7*time.Second, 4, 0))
	add("only UserTimeout", configFor(t, 0, 0, 0, 12345*time.Millisecond))
	add("all set", fullConfig(t))
	var least, largest keepalive.Config
	for _, o := range []string{"Idle", "Interval", "Count", "UserTimeout"} {
		l, g := limit(o, true), limit(o, false)
		add(o+" least", l)
		add(o+" largest", g)
		least = keepalive.Config{Idle: max(least.Idle, l.Idle), Interval: max(least.Interval, l.Interval), Count: max(least.Count, l.Count), UserTimeout: max(least.UserTimeout, l.UserTimeout)}
		largest = keepalive.Config{Idle: max(largest.Idle, g.Idle), Interval: max(largest.Interval, g.Interval), Count: max(largest.Count, g.Count), UserTimeout: max(largest.UserTimeout, g.UserTimeout)}
	}
	add("all least", least)
	add("all largest", largest)
	return out
}

// systemValues returns the values a new socket has: SystemDefaults where
// the platform reads them, else what Get reports for a new socket (AIX).
func systemValues(t testing.TB) keepalive.Config {
	t.Helper()
	if keepalive.Platform().DefaultsReadable {
		sys, err := keepalive.SystemDefaults()
		require.NoError(t, err, "SystemDefaults")
		return sys
	}
	conn, _ := loopbackPair(t, &keepalive.Dialer{NetDialer: &net.Dialer{KeepAlive: -1}, Config: keepalive.Config{}})
	c, err := keepalive.Get(conn)
	require.NoError(t, err, "Get of a new socket")
	c.Off = false
	return c
}

// zeroFill returns what a zero field of a Config given to Set puts on
// conn: the system default (sys), or where the platform cannot read the
// defaults (AIX), the value conn holds now, which Set leaves.
func zeroFill(t testing.TB, conn net.Conn, sys keepalive.Config) keepalive.Config {
	t.Helper()
	if keepalive.Platform().DefaultsReadable {
		return sys
	}
	c, err := keepalive.Get(conn)
	require.NoError(t, err, "Get before Set")
	return c
}

// end is one end of a connection, named for the tests' messages.
type end struct {
	name string
	conn net.Conn
}

// ends names the two ends of a connection.
func ends(dialed, accepted net.Conn) []end {
	return []end{{"dialed", dialed}, {"accepted", accepted}}
}

// getError returns the text of the error Get fails with where the platform
// sets a field it cannot read back, or "" where Get reads every value.
func getError(t testing.TB) string {
	t.Helper()
	w := wantPlatform(t)
	if !w.Off.Readable {
		return "keepalive: " + unsupportedText("reading keepalive settings", w.Off.why)
	}
	for _, f := range w.fields() {
		if f.Settable && !f.Readable {
			return unsupportedText("reading "+f.name+" back", f.why)
		}
	}
	return ""
}

// assertHolds checks that the socket s, a net.Conn that is or wraps a TCP
// connection or a *net.TCPListener, holds want, the Config Get must report:
// the test's own getsockopt calls read it, and Get returns it, or fails
// saying why where the platform cannot read the values back.
func assertHolds(t testing.TB, s any, want keepalive.Config, msg string) {
	t.Helper()
	var sc syscall.Conn
	switch v := s.(type) {
	case net.Conn:
		sc = tcpConn(t, v)
	case syscall.Conn:
		sc = v
	default:
		require.Failf(t, "not a socket", "%T", s)
	}
	assert.Equal(t, kernelOf(t, want), readSocket(t, sc), "getsockopt, %s", msg)
	got, err := keepalive.Get(s)
	if why := getError(t); why != "" {
		assert.ErrorIs(t, err, errors.ErrUnsupported, "Get, %s", msg)
		assert.ErrorContains(t, err, why, "Get, %s", msg)
		return
	}
	if assert.NoError(t, err, "Get, %s", msg) {
		assert.Equal(t, want, got, "Get, %s", msg)
	}
}

// forcedOff checks, where the system probes every connection whatever
// SO_KEEPALIVE says, that err, from turning keepalive off, says so, and
// reports whether it did; elsewhere it reports false.
func forcedOff(t testing.TB, err error, msg string) bool {
	t.Helper()
	if !wantPlatform(t).keepAliveForced {
		return false
	}
	assert.ErrorIs(t, err, errors.ErrUnsupported, msg)
	assert.ErrorContains(t, err, unsupportedText("turning keepalive off",
		"net.inet.tcp.always_keepalive is 1, so the kernel probes every idle connection whatever SO_KEEPALIVE says"), msg)
	return true
}
