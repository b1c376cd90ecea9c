package integration_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// pgServer starts the server on first use.
var pgServer = sync.OnceValue(func() *server { return timed("PostgreSQL", startPostgres) })

// postgres returns the package's PostgreSQL server, started on first use:
// initdb in a temporary folder, then postgres listening on 127.0.0.1 only,
// with its Unix socket in that folder.
func postgres(t testing.TB) *server {
	t.Helper()
	return pgServer().need(t)
}

// pgDSN returns the keyword/value connection string for s.
func pgDSN(s *server, extra string) string {
	host, port, _ := net.SplitHostPort(s.Addr)
	return fmt.Sprintf("host=%s port=%s user=postgres dbname=postgres sslmode=disable %s", host, port, extra)
}

// pgReady returns a readiness check that connects with dsn.
func pgReady(dsn string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c, err := pgconn.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}
}

func startPostgres() *server {
	pg, err := testserver.InitPostgres(tmpRoot, "postgres-")
	if err != nil {
		return &server{err: err}
	}
	return startOnFreePort(func(port int) (*server, error) {
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		if err := pg.Start("127.0.0.1", port, hostSpawn, onStop, pgReady(pgDSN(s, ""))); err != nil {
			return nil, err
		}
		return s, nil
	})
}

// pgClientPort is the query that returns the client's TCP port as the server
// sees it: the proof that a query went over the socket a test reads.
const pgClientPort = "SELECT inet_client_port()"

// queryTimeout bounds each test's query or request.
const queryTimeout = 10 * time.Second

func TestPgx(t *testing.T) {
	t.Parallel()
	pg := postgres(t)
	tests := []struct {
		name    string
		connect func(t *testing.T, dialFunc pgconn.DialFunc) (query func(ctx context.Context, sql string) pgx.Row, netConn func() net.Conn)
	}{
		{"pgx.ConnConfig", func(t *testing.T, dialFunc pgconn.DialFunc) (func(context.Context, string) pgx.Row, func() net.Conn) {
			cfg, err := pgx.ParseConfig(pgDSN(pg, ""))
			require.NoError(t, err)
			cfg.DialFunc = dialFunc
			conn, err := pgx.ConnectConfig(context.Background(), cfg)
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close(context.Background()) })
			return func(ctx context.Context, sql string) pgx.Row { return conn.QueryRow(ctx, sql) },
				func() net.Conn { return conn.PgConn().Conn() }
		}},
		{"pgxpool.Config", func(t *testing.T, dialFunc pgconn.DialFunc) (func(context.Context, string) pgx.Row, func() net.Conn) {
			cfg, err := pgxpool.ParseConfig(pgDSN(pg, "pool_max_conns=1"))
			require.NoError(t, err)
			cfg.ConnConfig.DialFunc = dialFunc
			pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			return func(ctx context.Context, sql string) pgx.Row { return pool.QueryRow(ctx, sql) },
				func() net.Conn {
					c, err := pool.Acquire(context.Background())
					require.NoError(t, err)
					defer c.Release()
					return c.Conn().PgConn().Conn()
				}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(clientConfig)
			query, netConn := tt.connect(t, rec.DialContext)
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			var port int
			require.NoError(t, query(ctx, pgClientPort).Scan(&port))

			d := rec.only(t)
			assert.Equal(t, "tcp", d.Network)
			assert.Same(t, d.Conn, netConn(), "pgx's own net.Conn is the one the dialer returned")
			assert.Equal(t, localPort(t, d.Conn), port, "the query went over the dialed socket")
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
			assertSocket(t, d.Conn, clientConfig)
		})
	}
}

// pqDialer hides DialContext, so that lib/pq falls back to Dial and
// DialTimeout, as for a pq.Dialer that has no DialContext.
type pqDialer struct{ r *recorder }

func (d pqDialer) Dial(network, address string) (net.Conn, error) {
	return d.r.Dial(network, address)
}

func (d pqDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	return d.r.DialTimeout(network, address, timeout)
}

func TestLibPQ(t *testing.T) {
	t.Parallel()
	pg := postgres(t)
	// lib/pq calls DialContext when the Dialer has it (as *keepalive.Dialer
	// does), with connect_timeout as the context's deadline; a Dialer with
	// only the pq.Dialer methods gets DialTimeout(connect_timeout), or Dial
	// when there is no connect_timeout.
	tests := []struct {
		name        string
		dsn         string
		hideContext bool
		method      string
		// timeout is DialTimeout's argument, or for DialContext what the
		// context's deadline leaves at most: connect_timeout, else the
		// query's own 10 s.
		timeout time.Duration
	}{
		{"DialContext with connect_timeout", "connect_timeout=5", false, "DialContext", 5 * time.Second},
		{"DialContext", "", false, "DialContext", queryTimeout},
		{"DialTimeout", "connect_timeout=5", true, "DialTimeout", 5 * time.Second},
		{"Dial", "", true, "Dial", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(clientConfig)
			connector, err := pq.NewConnector(pgDSN(pg, tt.dsn))
			require.NoError(t, err)
			if tt.hideContext {
				connector.Dialer(pqDialer{rec})
			} else {
				connector.Dialer(rec)
			}
			db := sql.OpenDB(connector)
			t.Cleanup(func() { db.Close() })
			db.SetMaxOpenConns(1)
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			var port int
			require.NoError(t, db.QueryRowContext(ctx, pgClientPort).Scan(&port))

			d := rec.only(t)
			assert.Equal(t, tt.method, d.Method)
			if tt.method == "DialContext" {
				// The deadline is set just before the dial; 2 s is room
				// for a loaded machine.
				assert.True(t, d.Timeout > tt.timeout-2*time.Second && d.Timeout <= tt.timeout,
					"deadline %v away at the dial; want at most %v", d.Timeout, tt.timeout)
			} else {
				assert.Equal(t, tt.timeout, d.Timeout, "timeout")
			}
			assert.Equal(t, localPort(t, d.Conn), port, "the query went over the dialed socket")
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
			assertSocket(t, d.Conn, clientConfig)
		})
	}
}

// pgSleep is the query the dead-peer tests leave waiting on the server.
const pgSleep = "SELECT pg_sleep(60)"

// pgTerminate ends, at cleanup, the server process still sleeping for the
// client whose socket has localPort, so that a dead client's query does
// not hold a connection slot until it wakes.
func pgTerminate(t *testing.T, pg *server, localPort int) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		c, err := pgconn.Connect(ctx, pgDSN(pg, ""))
		if err != nil {
			t.Errorf("connecting to end the sleeping query: %v", err)
			return
		}
		defer c.Close(ctx)
		err = c.ExecParams(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = $1",
			[][]byte{[]byte(strconv.Itoa(localPort))}, nil, nil, nil).Read().Err
		if err != nil {
			t.Errorf("ending the sleeping query: %v", err)
		}
	})
}

// deadPeerPgx leaves a pgx query waiting on the server and cuts its flow.
// The read fails with ETIMEDOUT, which pgx takes for the expiry of a
// deadline of its own (net.Error's Timeout is true for ETIMEDOUT): it reads
// again, gets EOF, and returns a bare io.ErrUnexpectedEOF, without the
// ETIMEDOUT, and closes the connection.
func deadPeerPgx(t *testing.T) {
	pg := postgres(t)
	rec := newRecorder(deadPeerConfig)
	cfg, err := pgx.ParseConfig(pgDSN(pg, ""))
	require.NoError(t, err)
	cfg.DialFunc = rec.DialContext
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	d := rec.only(t)
	pgTerminate(t, pg, localPort(t, d.Conn))
	done, last := callAndCut(t, d.Conn, func() error {
		_, err := conn.Exec(context.Background(), pgSleep)
		return err
	})
	t.Parallel()

	o := await(t, done)
	assert.Equal(t, io.ErrUnexpectedEOF, o.err, "pgx's error")
	assert.False(t, pgconn.Timeout(o.err), "pgconn.Timeout(%v)", o.err)
	assert.True(t, conn.IsClosed(), "pgx closed the connection")
	noticed(t, "pgx", fmt.Sprint(o.err), last, o.at)
}

// deadPeerLibPQ leaves a lib/pq query waiting on the server and cuts its
// flow.
func deadPeerLibPQ(t *testing.T) {
	pg := postgres(t)
	rec := newRecorder(deadPeerConfig)
	connector, err := pq.NewConnector(pgDSN(pg, ""))
	require.NoError(t, err)
	connector.Dialer(rec)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	require.NoError(t, db.PingContext(ctx))
	d := rec.only(t)
	pgTerminate(t, pg, localPort(t, d.Conn))
	done, last := callAndCut(t, d.Conn, func() error {
		_, err := db.ExecContext(context.Background(), pgSleep)
		return err
	})
	t.Parallel()

	o := await(t, done)
	require.Error(t, o.err)
	assert.ErrorIs(t, o.err, syscall.ETIMEDOUT)
	assert.Len(t, rec.Dials(t), 1, "database/sql did not retry the query on a new connection")
	noticed(t, "lib/pq", o.err.Error(), last, o.at)
}

// idlePgx cuts the flow of an idle pgx connection. The next query's write
// fails with ETIMEDOUT, which pgx returns wrapped as "timeout: write
// failed: ...", the chain kept, and the connection is closed.
func idlePgx(t *testing.T) {
	pg := postgres(t)
	rec := newRecorder(deadPeerConfig)
	cfg, err := pgx.ParseConfig(pgDSN(pg, ""))
	require.NoError(t, err)
	cfg.DialFunc = rec.DialContext
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		_, err := conn.Exec(ctx, "SELECT 1")
		return err
	}
	err = idleDeath(t, "pgx", rec, call, func(err error) string { return fmt.Sprintf("next query: %v", err) })
	assert.ErrorIs(t, err, syscall.ETIMEDOUT, "the next query")
	assert.True(t, conn.IsClosed(), "pgx closed the connection")
}

// idlePgxpool cuts the flow of a connection idle in a pgxpool. The pool
// pings a connection idle for more than a second before handing it out,
// finds it dead, and dials again: the next query succeeds.
func idlePgxpool(t *testing.T) {
	pg := postgres(t)
	rec := newRecorder(deadPeerConfig)
	cfg, err := pgxpool.ParseConfig(pgDSN(pg, "pool_max_conns=1"))
	require.NoError(t, err)
	cfg.ConnConfig.DialFunc = rec.DialContext
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		_, err := pool.Exec(ctx, "SELECT 1")
		return err
	}
	err = idleDeath(t, "pgxpool", rec, call, func(err error) string { return fmt.Sprintf("next query: %v; the pool dialed again", err) })
	assert.NoError(t, err, "the next query")
	// The pool's new connection, and the cancel request that pgx sends
	// over a connection of its own, through DialFunc too, when it closes
	// a broken one.
	assert.GreaterOrEqual(t, len(rec.Dials(t)), 2, "dials")
}

// idleLibPQ cuts the flow of a lib/pq connection idle in database/sql's
// pool. lib/pq reports the failed write as driver.ErrBadConn, and
// database/sql runs the query again on a new connection: the application
// sees nothing.
func idleLibPQ(t *testing.T) {
	pg := postgres(t)
	rec := newRecorder(deadPeerConfig)
	connector, err := pq.NewConnector(pgDSN(pg, ""))
	require.NoError(t, err)
	connector.Dialer(rec)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	sqlIdleDeath(t, "lib/pq", rec, db)
}
