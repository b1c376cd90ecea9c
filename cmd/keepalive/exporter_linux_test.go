package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
)

// syncBuffer is a bytes.Buffer that a command may write while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// exporter is a keepalive exporter the test runs in its own process.
type exporter struct {
	addr   string // host:port it serves on
	stderr *syncBuffer
}

// startExporter runs keepalive exporter with args (-listen 127.0.0.1:0
// added), waits until it serves, and stops it at cleanup, checking that it
// ends with status 0.
func startExporter(t *testing.T, args ...string) *exporter {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	x := &exporter{stderr: &syncBuffer{}}
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, append([]string{"exporter", "-listen", "127.0.0.1:0"}, args...), &env{stdout: pw, stderr: x.stderr})
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case c := <-code:
			assert.Equal(t, exitOK, c, "exporter's exit status; stderr: %s", x.stderr)
		case <-time.After(10 * time.Second):
			t.Error("the exporter did not stop when interrupted")
		}
	})
	br := bufio.NewReader(pr)
	line, err := br.ReadString('\n')
	require.NoError(t, err, "stderr: %s", x.stderr)
	go io.Copy(io.Discard, br)
	x.addr = serving(t, line)
	return x
}

// serving returns the address of the exporter's first line, "serving
// metrics on ADDR/metrics, ...".
func serving(t testing.TB, line string) string {
	t.Helper()
	rest, ok := strings.CutPrefix(line, "serving metrics on ")
	require.True(t, ok, "first line: %q", line)
	addr, _, ok := strings.Cut(rest, "/metrics, ")
	require.True(t, ok, "first line: %q", line)
	return addr
}

// get fetches url with client and returns the status and body.
func get(t *testing.T, client *http.Client, url string, auth ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	require.NoError(t, err)
	if len(auth) == 2 {
		req.SetBasicAuth(auth[0], auth[1])
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// TestExporter checks what keepalive exporter serves for a pair of
// connections with known values, the landing page, and that it stops when
// interrupted.
func TestExporter(t *testing.T) {
	c := keepalive.Config{Idle: 400 * time.Second, Interval: 6 * time.Second, Count: 3, UserTimeout: 30 * time.Second}
	dialed, accepted := auditPair(t, c)
	x := startExporter(t, "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)), "-idle-timeout", "350s", "-detect", "1m", "-per-connection")
	status, body := get(t, http.DefaultClient, "http://"+x.addr+"/metrics")
	require.Equal(t, http.StatusOK, status, body)
	for _, w := range append(wantMetrics(t, c, dialed, accepted),
		// The exporter's own, as other exporters have.
		"\n# TYPE go_goroutines gauge\n",
		"\n# TYPE process_cpu_seconds_total counter\n",
		"\npromhttp_metric_handler_requests_total{code=\"200\"} 0\n",
	) {
		assert.Contains(t, body, w)
	}
	assert.Equal(t, 2, strings.Count(body, "\nkeepalive_enabled{"), "one series per connection the flags select")

	status, body = get(t, http.DefaultClient, "http://"+x.addr+"/")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `<a href="metrics">`)
	status, _ = get(t, http.DefaultClient, "http://"+x.addr+"/nothing")
	assert.Equal(t, http.StatusNotFound, status)
	assert.Empty(t, x.stderr.String())
}

// TestExporterScrapeConn checks that a scrape does not count the
// connection it came on, at either end, and counts every other connection
// to the exporter, on the same port, from the same process: whichever of
// two connections carries the scrape is the one left out. The exporter
// runs as a process of its own, so that its connections are told apart by
// their pid.
func TestExporterScrapeConn(t *testing.T) {
	listen := freePort(t)
	_, port, err := net.SplitHostPort(listen)
	require.NoError(t, err)
	h, err := testproc.Start(t, testproc.Opts{Env: []string{helperEnv + "=run"}, Args: []string{"exporter", "-listen", listen, "-port", port, "-per-connection"}})
	require.NoError(t, err)
	line, err := h.Stdout.ReadString('\n')
	require.NoError(t, err, "the exporter did not start")
	addr := serving(t, line)
	exporter := h.Cmd.Process.Pid

	// A connection to the exporter that carries no scrape, held idle.
	other, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { other.Close() })

	// The first scrape, on a connection of its own that the client keeps
	// open afterwards.
	var first net.Conn
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		first = c
		return c, err
	}}}
	t.Cleanup(client.CloseIdleConnections)
	status, body := get(t, client, "http://"+addr+"/metrics")
	require.Equal(t, http.StatusOK, status, body)
	checkScrape(t, body, exporter, first, other)

	// The second scrape on the idle connection: now it is the one left
	// out, and the first scrape's, idle in the client, is counted.
	_, err = io.WriteString(other, "GET /metrics HTTP/1.1\r\nHost: "+addr+"\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(other), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", b)
	checkScrape(t, string(b), exporter, other, first)
}

// checkScrape checks the per-connection series of a scrape that came on
// scrape: neither of its ends is there, both ends of idle, which carries
// no scrape, are, the exporter's end held by the exporter, and the
// aggregates count the same connections.
func checkScrape(t *testing.T, body string, exporter int, scrape, idle net.Conn) {
	t.Helper()
	t.Logf("scrape on %v -> %v:\n%s", scrape.LocalAddr(), scrape.RemoteAddr(), body)
	series := regexp.MustCompile(`(?m)^keepalive_enabled\{command="[^"]*",local="([^"]+)",pid="(\d+)",remote="([^"]+)"\} [01]$`).FindAllStringSubmatch(body, -1)
	// Each series as "local -> remote pid".
	var got []string
	for _, m := range series {
		got = append(got, fmt.Sprintf("%s -> %s %s", m[1], m[3], m[2]))
	}
	end := func(c net.Conn, pid int, mirrored bool) string {
		if mirrored {
			return fmt.Sprintf("%v -> %v %d", c.RemoteAddr(), c.LocalAddr(), pid)
		}
		return fmt.Sprintf("%v -> %v %d", c.LocalAddr(), c.RemoteAddr(), pid)
	}
	assert.NotContains(t, got, end(scrape, os.Getpid(), false), "the scraper's end of the scrape's connection")
	assert.NotContains(t, got, end(scrape, exporter, true), "the exporter's end of the scrape's connection")
	assert.Contains(t, got, end(idle, os.Getpid(), false), "the test's end of the other connection")
	assert.Contains(t, got, end(idle, exporter, true), "the exporter's end of the other connection")
	assert.Len(t, got, 2, "the exporter's port has no other connection")

	total := 0
	for _, m := range regexp.MustCompile(`(?m)^keepalive_connections\{[^}]*\} (\d+)$`).FindAllStringSubmatch(body, -1) {
		n, err := strconv.Atoi(m[1])
		require.NoError(t, err)
		total += n
	}
	assert.Equal(t, len(series), total, "keepalive_connections counts the same connections")
}

// TestExporterDefaultListen checks that the exporter listens on loopback
// unless told otherwise.
func TestExporterDefaultListen(t *testing.T) {
	ap, err := netip.ParseAddrPort(defaultListen)
	require.NoError(t, err)
	assert.True(t, ap.Addr().IsLoopback(), defaultListen)
	fs := newFlagSet(exporterCommand)
	assert.Equal(t, defaultListen, fs.Lookup("listen").DefValue)
}

// TestExporterErrors checks that audits that fail are counted in the
// metrics and logged on stderr, and that the exporter goes on serving.
func TestExporterErrors(t *testing.T) {
	x := startExporter(t, "-pid", "999999999")
	for i := 1; i <= 2; i++ {
		status, body := get(t, http.DefaultClient, "http://"+x.addr+"/metrics")
		assert.Equal(t, http.StatusOK, status)
		assert.Contains(t, body, fmt.Sprintf("\nkeepalive_scrape_errors_total %d\n", i))
		assert.NotContains(t, body, "keepalive_connections")
	}
	log := x.stderr.String()
	t.Logf("stderr:\n%s", log)
	lines := strings.Split(strings.TrimSpace(log), "\n")
	assert.Len(t, lines, 2)
	for _, l := range lines {
		assert.True(t, strings.HasPrefix(l, "keepalive exporter: "), l)
		assert.Contains(t, l, `level=ERROR msg="audit failed"`)
		assert.Contains(t, l, "process 999999999")
	}
}

// TestExporterPromtool checks the exporter's real output with promtool
// check metrics, Prometheus' own linter.
func TestExporterPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		skipOutsideCI(t, "promtool (Debian package prometheus) is not installed")
	}
	dialed, _ := auditPair(t, keepalive.Config{Idle: 30 * time.Second})
	for _, args := range [][]string{
		{"-idle-timeout", "350s", "-detect", "2m"},
		{"-idle-timeout", "350s", "-per-connection", "-port", fmt.Sprint(portOf(dialed))},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			x := startExporter(t, args...)
			status, body := get(t, http.DefaultClient, "http://"+x.addr+"/metrics")
			require.Equal(t, http.StatusOK, status)
			require.Contains(t, body, "keepalive_connections{")
			if contains(args, "-per-connection") {
				require.Contains(t, body, "keepalive_idle_seconds{")
			}
			cmd := exec.Command(promtool, "check", "metrics")
			cmd.Stdin = strings.NewReader(body)
			out, err := cmd.CombinedOutput()
			assert.NoError(t, err, "promtool check metrics:\n%s", out)
			assert.Empty(t, strings.TrimSpace(string(out)), "promtool's findings")
		})
	}
}

func contains(s []string, v string) bool { return indexOf(s, v) >= 0 }

// TestExporterWebConfig checks TLS and basic authentication through the
// exporter toolkit's web configuration file.
func TestExporterWebConfig(t *testing.T) {
	dir := t.TempDir()
	certPEM := writeCert(t, dir)
	web := writeWebConfig(t, dir, "s3cret")
	x := startExporter(t, "-web-config", web, "-idle-timeout", "350s")

	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(certPEM))
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	t.Cleanup(client.CloseIdleConnections)
	url := "https://" + x.addr + "/metrics"

	status, _ := get(t, client, url)
	assert.Equal(t, http.StatusUnauthorized, status, "no credentials")
	status, _ = get(t, client, url, "prometheus", "wrong")
	assert.Equal(t, http.StatusUnauthorized, status, "wrong password")
	status, body := get(t, client, url, "prometheus", "s3cret")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, "keepalive_scrape_errors_total 0\n")

	status, _ = get(t, http.DefaultClient, "http://"+x.addr+"/metrics", "prometheus", "s3cret")
	assert.Equal(t, http.StatusBadRequest, status, "plain HTTP to the TLS port")
}

// writeCert writes a self-signed certificate for localhost and 127.0.0.1,
// and its key, to dir as cert.pem and key.pem, and returns the
// certificate.
func writeCert(t *testing.T, dir string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cert.pem"), certPEM, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	return certPEM
}

// writeWebConfig writes an exporter toolkit web configuration file with
// TLS from dir's cert.pem and key.pem and the user prometheus with
// password, and returns its path. With dir empty, it makes a folder and a
// certificate of its own, and the password "example".
func writeWebConfig(t *testing.T, dir, password string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
		writeCert(t, dir)
		password = "example"
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	require.NoError(t, err)
	path := filepath.Join(dir, "web.yml")
	conf := fmt.Sprintf("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\nbasic_auth_users:\n  prometheus: %s\n", hash)
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	return path
}
