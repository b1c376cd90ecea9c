package integration_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// redisServer starts the server without TLS on first use.
var redisServer = sync.OnceValue(func() *server { return timed("Redis", func() *server { return startRedis(nil) }) })

// redisTLSServer starts the TLS server on first use, with the test
// certificate.
var redisTLSServer = sync.OnceValue(func() *server { return timed("Redis (TLS)", func() *server { return startRedis(testCertificate()) }) })

// redisPlain returns the package's Redis server without TLS, started on
// first use.
func redisPlain(t testing.TB) *server {
	t.Helper()
	return redisServer().need(t)
}

// redisTLS returns the package's Redis server that speaks only TLS, with the
// test certificate, started on first use.
func redisTLS(t testing.TB) *server {
	t.Helper()
	certificate(t)
	return redisTLSServer().need(t)
}

// startRedis starts redis-server on 127.0.0.1 with no persistence; with a
// certificate it listens for TLS only (--port 0 --tls-port N).
func startRedis(c *testCert) *server {
	bin, err := testserver.LookPath("redis-server", "/usr/bin/redis-server")
	if err != nil {
		return &server{err: err}
	}
	name := "redis"
	if c != nil {
		name = "redis-tls"
	}
	dir := filepath.Join(tmpRoot, name)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return &server{err: err}
	}
	return startOnFreePort(func(port int) (*server, error) {
		args := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no"}
		var tlsConfig *tls.Config
		if c == nil {
			args = append(args, "--port", strconv.Itoa(port))
		} else {
			args = append(args, "--port", "0", "--tls-port", strconv.Itoa(port),
				"--tls-cert-file", c.CertFile, "--tls-key-file", c.KeyFile, "--tls-ca-cert-file", c.CertFile,
				"--tls-auth-clients", "no")
			tlsConfig = &tls.Config{RootCAs: c.Pool, ServerName: "127.0.0.1"}
		}
		p, err := testserver.Start(name, exec.Command(bin, args...), filepath.Join(tmpRoot, name+".log"), syscall.SIGKILL, nil, hostSpawn, onStop)
		if err != nil {
			return nil, err
		}
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		err = p.WaitReady(func(ctx context.Context) error {
			rdb := redis.NewClient(&redis.Options{Addr: s.Addr, TLSConfig: tlsConfig, MaxRetries: -1})
			defer rdb.Close()
			return rdb.Ping(ctx).Err()
		})
		if err != nil {
			p.Kill()
			return nil, err
		}
		return s, nil
	})
}

// tlsOver returns a go-redis Dialer that does the TLS handshake over the
// connection dial returns: go-redis applies Options.TLSConfig only in its
// own dialer.
func tlsOver(dial func(ctx context.Context, network, addr string) (net.Conn, error), cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, err
		}
		return tc, nil
	}
}

// clientAddr returns the addr field of CLIENT INFO: the client's address as
// the server sees it.
func clientAddr(t testing.TB, info string) string {
	t.Helper()
	for _, f := range strings.Fields(info) {
		if a, ok := strings.CutPrefix(f, "addr="); ok {
			return a
		}
	}
	require.Failf(t, "no addr in CLIENT INFO", "%q", info)
	return ""
}

func TestRedis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		options func(t *testing.T, rec *recorder) *redis.Options
	}{
		{"Dialer", func(t *testing.T, rec *recorder) *redis.Options {
			return &redis.Options{Addr: redisPlain(t).Addr, Dialer: rec.DialContext}
		}},
		{"Dialer with TLS", func(t *testing.T, rec *recorder) *redis.Options {
			return &redis.Options{Addr: redisTLS(t).Addr, Dialer: tlsOver(rec.DialContext, clientTLS(t))}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(clientConfig)
			opt := tt.options(t, rec)
			opt.PoolSize = 1
			rdb := redis.NewClient(opt)
			t.Cleanup(func() { rdb.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			require.NoError(t, rdb.Set(ctx, "keepalive", t.Name(), 0).Err())
			info, err := rdb.Do(ctx, "CLIENT", "INFO").Text()
			require.NoError(t, err)

			d := rec.only(t)
			assert.Equal(t, d.Conn.LocalAddr().String(), clientAddr(t, info), "the commands went over the dialed socket")
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
			assertSocket(t, d.Conn, clientConfig)
		})
	}
}

// TestRedisTLSConfigWithDialer shows why the TLS case above does its own
// handshake: with Options.Dialer set, go-redis ignores Options.TLSConfig and
// speaks plain text to a TLS port.
func TestRedisTLSConfigWithDialer(t *testing.T) {
	t.Parallel()
	srv := redisTLS(t)
	rec := newRecorder(clientConfig)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, TLSConfig: clientTLS(t), Dialer: rec.DialContext, MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	err := rdb.Ping(ctx).Err()
	require.Error(t, err, "PING in plain text to a TLS-only port")
	t.Logf("PING: %v", err)
	d := rec.only(t)
	assert.IsType(t, &net.TCPConn{}, d.Conn, "the client used the dialer's connection as it was")
}

// deadPeerRedis leaves a go-redis BLPOP waiting on the server and cuts its
// flow. The read fails with ETIMEDOUT, a timeout by net.Error's reckoning;
// go-redis reads again and gets EOF, and it retries a command that ended in
// EOF, so by default it dials again and sends BLPOP anew, and the
// application sees nothing: a value pushed afterwards is popped. With
// MaxRetries -1 the BLPOP returns that bare io.EOF, without the ETIMEDOUT.
func deadPeerRedis(t *testing.T) {
	tests := []struct {
		name       string
		maxRetries int
	}{
		{"default", 0},
		{"MaxRetries -1", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redisPlain(t)
			rec := newRecorder(deadPeerConfig)
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Dialer: rec.DialContext, PoolSize: 1, MaxRetries: tt.maxRetries})
			t.Cleanup(func() { rdb.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			require.NoError(t, rdb.Ping(ctx).Err())
			d := rec.only(t)
			key := "keepalive-deadpeer-" + strconv.Itoa(localPort(t, d.Conn))
			var popped []string
			done, last := callAndCut(t, d.Conn, func() error {
				var err error
				popped, err = rdb.BLPop(context.Background(), 0, key).Result()
				return err
			})
			t.Parallel()

			if tt.maxRetries < 0 {
				o := await(t, done)
				assert.Equal(t, io.EOF, o.err, "go-redis's error")
				assert.Len(t, rec.Dials(t), 1, "dials")
				noticed(t, "go-redis, MaxRetries -1", fmt.Sprint(o.err), last, o.at)
				return
			}
			redial := rec.redialAfter(t, 1)
			// A client of its own pushes the value the retried BLPOP waits for.
			other := redis.NewClient(&redis.Options{Addr: srv.Addr})
			t.Cleanup(func() { other.Close() })
			ctx, cancel = context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			require.NoError(t, other.RPush(ctx, key, "after").Err())
			o := await(t, done)
			assert.NoError(t, o.err, "BLPOP after the retry")
			assert.Equal(t, []string{key, "after"}, popped)
			noticed(t, "go-redis", "no error: dialed again and re-sent BLPOP, which returned the value pushed after", last, redial.At)
		})
	}
}

// idleRedis cuts the flow of a go-redis connection idle in its pool. The
// pool checks an idle connection before handing it out and dials again:
// the application sees nothing.
func idleRedis(t *testing.T) {
	srv := redisPlain(t)
	rec := newRecorder(deadPeerConfig)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, Dialer: rec.DialContext, PoolSize: 1})
	t.Cleanup(func() { rdb.Close() })
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		return rdb.Ping(ctx).Err()
	}
	err := idleDeath(t, "go-redis", rec, call, func(err error) string {
		return fmt.Sprintf("next command: %v; the pool dialed again", err)
	})
	assert.NoError(t, err, "the next command")
	assert.Len(t, rec.Dials(t), 2, "dials")
}
