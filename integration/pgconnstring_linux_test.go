package integration_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// libpqKeepalive are the keepalive options of the issue, as libpq reads
// them: 30 s idle, 10 s between probes, 3 probes, 40 000 ms user timeout.
var libpqKeepalive = keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: 40 * time.Second}

// pgConnString is a connection string with libpq's keepalive options, and
// what it is without them.
type pgConnString struct{ conn, rest string }

// pgConnStrings returns, for s, the same connection with libpq's keepalive
// options (keepalives=1 and the values of libpqKeepalive, or keepalives=0
// when on is false) in both forms libpq reads.
func pgConnStrings(s *server, on bool) map[string]pgConnString {
	host, port, _ := net.SplitHostPort(s.Addr)
	opts := [][2]string{{"keepalives", "1"}, {"keepalives_idle", "30"}, {"keepalives_interval", "10"}, {"keepalives_count", "3"}, {"tcp_user_timeout", "40000"}}
	if !on {
		opts[0][1] = "0"
	}
	var q, kv []string
	for _, o := range opts {
		q = append(q, o[0]+"="+o[1])
		kv = append(kv, o[0]+" = '"+o[1]+"'")
	}
	uri := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", s.Addr)
	kw := fmt.Sprintf("host=%s port=%s", host, port)
	const uriTail, kwTail = "&application_name=connstring-test", " user=postgres dbname=postgres sslmode=disable application_name='connstring test'"
	return map[string]pgConnString{
		"URI":           {uri + "&" + strings.Join(q, "&") + uriTail, uri + uriTail},
		"keyword/value": {kw + " " + strings.Join(kv, " ") + kwTail, kw + kwTail},
	}
}

// TestPostgresConnString runs the connection string that libpq accepts with
// libpq's keepalive options, in both forms: psql (libpq) connects with it;
// pgx and lib/pq refuse it as it is; after ParsePostgres, pgx and lib/pq
// connect with the rest of the string through a Dialer that carries the
// Config, and the very socket they query over carries libpq's values. With
// keepalives=0 the socket has keepalive off and no user timeout, as libpq
// leaves it.
func TestPostgresConnString(t *testing.T) {
	t.Parallel()
	pg := postgres(t)
	for form, cs := range pgConnStrings(pg, true) {
		conn := cs.conn
		t.Run(form, func(t *testing.T) {
			t.Run("psql", func(t *testing.T) {
				psql, err := testserver.LookPath("psql", "/usr/lib/postgresql/*/bin/psql")
				if err != nil {
					testserver.Skip(t, err.Error())
				}
				ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
				defer cancel()
				out, err := exec.CommandContext(ctx, psql, "-X", "-A", "-t", "-c", "SELECT 1", conn).CombinedOutput()
				require.NoError(t, err, "psql: %s", out)
				assert.Equal(t, "1", strings.TrimSpace(string(out)))
			})
			t.Run("pgx as is", func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
				defer cancel()
				c, err := pgx.Connect(ctx, conn)
				if err == nil {
					c.Close(ctx)
				}
				require.Error(t, err, "pgx sends libpq's options to the server")
				assert.ErrorContains(t, err, `unrecognized configuration parameter "keepalive`)
			})
			t.Run("lib/pq as is", func(t *testing.T) {
				connector, err := pq.NewConnector(conn)
				require.NoError(t, err)
				db := sql.OpenDB(connector)
				t.Cleanup(func() { db.Close() })
				ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
				defer cancel()
				err = db.PingContext(ctx)
				require.Error(t, err, "lib/pq sends libpq's options to the server")
				assert.ErrorContains(t, err, `unrecognized configuration parameter "keepalive`)
			})

			cfg, rest, err := keepalive.ParsePostgres(conn)
			require.NoError(t, err)
			require.Equal(t, libpqKeepalive, cfg)
			require.Equal(t, cs.rest, rest)
			t.Run("pgx", func(t *testing.T) {
				d := newConnStringDialer(cfg)
				port := pgxQueryPort(t, rest, d)
				c := d.only(t)
				assert.Equal(t, localPort(t, c), port, "the query went over the dialed socket")
				assert.Equal(t, want(libpqKeepalive), readKernel(t, c))
			})
			t.Run("lib/pq", func(t *testing.T) {
				d := newConnStringDialer(cfg)
				port := pqQueryPort(t, rest, d)
				c := d.only(t)
				assert.Equal(t, localPort(t, c), port, "the query went over the dialed socket")
				assert.Equal(t, want(libpqKeepalive), readKernel(t, c))
			})
		})
	}
	for form, cs := range pgConnStrings(pg, false) {
		t.Run(form+" keepalives=0", func(t *testing.T) {
			cfg, rest, err := keepalive.ParsePostgres(cs.conn)
			require.NoError(t, err)
			require.Equal(t, keepalive.Config{Off: true}, cfg)
			require.Equal(t, cs.rest, rest)
			for name, query := range map[string]func(*testing.T, string, *connStringDialer) int{"pgx": pgxQueryPort, "lib/pq": pqQueryPort} {
				t.Run(name, func(t *testing.T) {
					d := newConnStringDialer(cfg)
					port := query(t, rest, d)
					c := d.only(t)
					assert.Equal(t, localPort(t, c), port, "the query went over the dialed socket")
					k := readKernel(t, c)
					assert.False(t, k.KeepAlive, "SO_KEEPALIVE")
					assert.Zero(t, k.UserTimeout, "TCP_USER_TIMEOUT: libpq sets none with keepalives=0")
				})
			}
		})
	}
}

// pgxQueryPort connects pgx with conn and d, and returns the client port
// the server saw.
func pgxQueryPort(t *testing.T, conn string, d *connStringDialer) int {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	pc, err := pgx.ParseConfig(conn)
	require.NoError(t, err)
	pc.DialFunc = d.DialContext
	c, err := pgx.ConnectConfig(ctx, pc)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(context.Background()) })
	var port int
	require.NoError(t, c.QueryRow(ctx, pgClientPort).Scan(&port))
	return port
}

// pqQueryPort connects lib/pq with conn and d, and returns the client port
// the server saw.
func pqQueryPort(t *testing.T, conn string, d *connStringDialer) int {
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	connector, err := pq.NewConnector(conn)
	require.NoError(t, err)
	connector.Dialer(d)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	var port int
	require.NoError(t, db.QueryRowContext(ctx, pgClientPort).Scan(&port))
	return port
}

// connStringDialer dials with the library's Dialer for a Config from
// ParsePostgres and keeps each connection, for pgx's DialFunc and lib/pq's
// Dialer.
type connStringDialer struct {
	dial func(ctx context.Context, network, address string) (net.Conn, error)

	mu    sync.Mutex
	conns []net.Conn
}

func newConnStringDialer(c keepalive.Config) *connStringDialer {
	return &connStringDialer{dial: (&keepalive.Dialer{Config: c}).DialContext}
}

func (d *connStringDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	conn, err := d.dial(ctx, network, address)
	if err == nil {
		d.mu.Lock()
		d.conns = append(d.conns, conn)
		d.mu.Unlock()
	}
	return conn, err
}

func (d *connStringDialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

func (d *connStringDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

// only returns the one connection dialed.
func (d *connStringDialer) only(t *testing.T) net.Conn {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	require.Len(t, d.conns, 1, "connections dialed")
	return d.conns[0]
}
