package integration_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// mariaServer starts the server on first use.
var mariaServer = sync.OnceValue(func() *server { return timed("MariaDB", startMariaDB) })

// mariadb returns the package's MariaDB server, started on first use:
// mariadb-install-db in a temporary folder, with root@127.0.0.1 and no
// password, then mariadbd on 127.0.0.1 only.
func mariadb(t testing.TB) *server {
	t.Helper()
	return mariaServer().need(t)
}

func startMariaDB() *server {
	m, err := testserver.InitMariaDB(tmpRoot, "mariadb")
	if err != nil {
		return &server{err: err}
	}
	return startOnFreePort(func(port int) (*server, error) {
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		ready := func(ctx context.Context) error {
			cfg := mysql.NewConfig()
			cfg.User, cfg.Net, cfg.Addr = "root", "tcp", s.Addr
			return mariaPing(ctx, cfg)
		}
		if err := m.Start("127.0.0.1", port, hostSpawn, onStop, ready, "--skip-log-bin"); err != nil {
			return nil, err
		}
		return s, nil
	})
}

// mariaPing connects with cfg and pings the server.
func mariaPing(ctx context.Context, cfg *mysql.Config) error {
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	return db.PingContext(ctx)
}

func TestMySQL(t *testing.T) {
	t.Parallel()
	my := mariadb(t)
	tests := []struct {
		name string
		open func(t *testing.T, rec *recorder) *sql.DB
	}{
		{"Config.DialFunc", func(t *testing.T, rec *recorder) *sql.DB {
			cfg := mysql.NewConfig()
			cfg.User, cfg.Net, cfg.Addr = "root", "tcp", my.Addr
			cfg.DialFunc = rec.DialContext
			c, err := mysql.NewConnector(cfg)
			require.NoError(t, err)
			return sql.OpenDB(c)
		}},
		{"RegisterDialContext", func(t *testing.T, rec *recorder) *sql.DB {
			network := fmt.Sprintf("keepalive-%d", os.Getpid())
			mysql.RegisterDialContext(network, rec.DialAddress)
			t.Cleanup(func() { mysql.DeregisterDialContext(network) })
			db, err := sql.Open("mysql", fmt.Sprintf("root@%s(%s)/", network, my.Addr))
			require.NoError(t, err)
			return db
		}},
		{`RegisterDialContext "tcp"`, func(t *testing.T, rec *recorder) *sql.DB {
			mysql.RegisterDialContext("tcp", rec.DialAddress)
			t.Cleanup(func() { mysql.DeregisterDialContext("tcp") })
			db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(%s)/", my.Addr))
			require.NoError(t, err)
			return db
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(clientConfig)
			db := tt.open(t, rec)
			t.Cleanup(func() { db.Close() })
			db.SetMaxOpenConns(1)
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			// HOST is the client's address as the server sees it.
			var host string
			require.NoError(t, db.QueryRowContext(ctx,
				"SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()").Scan(&host))

			d := rec.only(t)
			assert.Equal(t, my.Addr, d.Address)
			_, port, _ := strings.Cut(host, ":")
			assert.Equal(t, strconv.Itoa(localPort(t, d.Conn)), port, "the query went over the dialed socket (server sees %s)", host)
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
			// The driver turns SO_KEEPALIVE on after dialing; the values
			// stay.
			assertSocket(t, d.Conn, clientConfig)
		})
	}
}

// deadPeerMySQL leaves a go-sql-driver/mysql query waiting on the server
// and cuts its flow.
func deadPeerMySQL(t *testing.T) {
	my := mariadb(t)
	rec := newRecorder(deadPeerConfig)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", my.Addr
	cfg.DialFunc = rec.DialContext
	c, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	var id int64
	require.NoError(t, db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id))
	t.Cleanup(func() { mysqlKill(t, my, id) })
	d := rec.only(t)
	done, last := callAndCut(t, d.Conn, func() error {
		_, err := db.ExecContext(context.Background(), "SELECT SLEEP(60)")
		return err
	})
	t.Parallel()

	o := await(t, done)
	require.Error(t, o.err)
	assert.ErrorIs(t, o.err, mysql.ErrInvalidConn)
	assert.Len(t, rec.Dials(t), 1, "database/sql did not retry the query on a new connection")
	noticed(t, "go-sql-driver/mysql", o.err.Error(), last, o.at)
}

// mysqlKill ends connection id on the server, from a connection of its own.
func mysqlKill(t *testing.T, my *server, id int64) {
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", my.Addr
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Errorf("ending connection %d: %v", id, err)
		return
	}
	db := sql.OpenDB(c)
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	// The server may have ended it already, on the client's reset.
	if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL %d", id)); err != nil && !strings.Contains(err.Error(), "Unknown thread id") {
		t.Errorf("ending connection %d: %v", id, err)
	}
}

// idleMySQL cuts the flow of a go-sql-driver/mysql connection idle in
// database/sql's pool. The driver checks an idle connection before using
// it, logs "closing bad idle connection: connection timed out", and
// database/sql dials again: the application sees nothing.
func idleMySQL(t *testing.T) {
	my := mariadb(t)
	rec := newRecorder(deadPeerConfig)
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr = "root", "tcp", my.Addr
	cfg.DialFunc = rec.DialContext
	c, err := mysql.NewConnector(cfg)
	require.NoError(t, err)
	db := sql.OpenDB(c)
	t.Cleanup(func() { db.Close() })
	sqlIdleDeath(t, "go-sql-driver/mysql", rec, db)
}
