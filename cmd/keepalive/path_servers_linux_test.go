package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/netlab"
	"github.com/keepalive-go/keepalive/internal/testserver"
)

// These tests run keepalive path against the servers users run, started
// for the test with short timeouts that are the truth each answer is
// checked against: socat with its default listen backlog, PostgreSQL
// (authentication_timeout, and idle sessions through a URL that logs in),
// MariaDB (connect_timeout, and idle sessions), Redis (timeout, and its
// own keepalive), sshd (LoginGraceTime, MaxStartups) and nginx
// (client_header_timeout); on loopback, where nothing forgets a flow, and
// behind the lab's firewall, which forgets idle flows after labTimeout.

// The passwords of the users that log in with one. They must never be
// printed.
const (
	pgPassword    = "pg-s3cr@t:pw"
	mysqlPassword = "my-s3cr@t/pw"
	wrongPassword = "not-the-pw%"
)

// serverSet is a set of real servers where one Where says, each on its
// port, with the timeouts given.
type serverSet struct {
	host                         string
	socat, pg, maria             int
	redisTimeout, redisKeepalive int
	sshd, nginx                  int
}

// serverConfig is the truth a serverSet is set up with.
type serverConfig struct {
	authTimeout    time.Duration // PostgreSQL's authentication_timeout
	connectTimeout time.Duration // MariaDB's connect_timeout
	redisTimeout   time.Duration // Redis's timeout, on redisTimeout
	redisKeepalive time.Duration // Redis's tcp-keepalive, on redisKeepalive
	loginGrace     time.Duration // sshd's LoginGraceTime
	maxStartups    int           // sshd's MaxStartups; 0 leaves the default
	headerTimeout  time.Duration // nginx's client_header_timeout
}

// startServers starts a serverSet where w says: each server on the port
// ports gives it (a free loopback port when it returns 0), all at once.
// The test is skipped, or failed with CI set, when one cannot run here.
func startServers(t *testing.T, w testserver.Where, c serverConfig, ports func() (int, error)) *serverSet {
	t.Helper()
	s := &serverSet{host: w.Host}
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	each := func(name string, port *int, start func(port int) error) {
		wg.Go(func() {
			p, err := ports()
			if err == nil {
				err = start(p)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			*port = p
		})
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int(d / time.Second)) }
	each("socat", &s.socat, w.Socat)
	each("PostgreSQL", &s.pg, func(port int) error { return startPostgres(w, port, c.authTimeout) })
	each("MariaDB", &s.maria, func(port int) error { return startMariaDB(w, port, c.connectTimeout) })
	each("Redis", &s.redisTimeout, func(port int) error {
		return w.Redis(port, "--timeout", secs(c.redisTimeout), "--tcp-keepalive", "0")
	})
	each("Redis", &s.redisKeepalive, func(port int) error {
		return w.Redis(port, "--timeout", "0", "--tcp-keepalive", secs(c.redisKeepalive))
	})
	each("sshd", &s.sshd, func(port int) error {
		conf := []string{"LoginGraceTime " + secs(c.loginGrace)}
		if c.maxStartups > 0 {
			conf = append(conf, "MaxStartups "+strconv.Itoa(c.maxStartups))
		}
		return w.SSHD(port, conf...)
	})
	each("nginx", &s.nginx, func(port int) error {
		return w.Nginx(port, fmt.Sprintf("client_header_timeout %ds;", c.headerTimeout/time.Second))
	})
	wg.Wait()
	for _, err := range errs {
		var u testserver.Unavailable
		if errors.As(err, &u) {
			testserver.Skip(t, err.Error())
		}
	}
	require.NoError(t, errors.Join(errs...))
	return s
}

func (s *serverSet) addr(port int) string { return net.JoinHostPort(s.host, strconv.Itoa(port)) }

// startPostgres starts a PostgreSQL cluster of its own with
// authentication_timeout, and makes its users: app, who logs in without
// a password; idler, whose idle sessions end after idleSession; and
// secret, who logs in with pgPassword.
func startPostgres(w testserver.Where, port int, authTimeout time.Duration) error {
	pg, err := testserver.InitPostgres(w.Root, "postgres-")
	if err != nil {
		return err
	}
	hba := "local all all trust\nhost all secret all scram-sha-256\nhost all all all trust\n"
	if err := os.WriteFile(filepath.Join(pg.Data, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return err
	}
	if pg.Cred != nil {
		if err := os.Chown(filepath.Join(pg.Data, "pg_hba.conf"), int(pg.Cred.Uid), int(pg.Cred.Gid)); err != nil {
			return err
		}
	}
	admin := func(ctx context.Context) (*pgconn.PgConn, error) {
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", w.Host, port))
		if err != nil {
			return nil, err
		}
		if w.Dial != nil {
			cfg.DialFunc = w.Dial
		}
		return pgconn.ConnectConfig(ctx, cfg)
	}
	ready := func(ctx context.Context) error {
		c, err := admin(ctx)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}
	err = pg.Start(w.Host, port, w.Spawn, w.Register, ready,
		fmt.Sprintf("authentication_timeout=%dms", authTimeout.Milliseconds()), "max_connections=100")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := admin(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	for _, q := range []string{
		"CREATE ROLE app LOGIN",
		"CREATE DATABASE app OWNER app",
		"CREATE ROLE idler LOGIN",
		fmt.Sprintf("ALTER ROLE idler SET idle_session_timeout = '%dms'", idleSession.Milliseconds()),
		fmt.Sprintf("CREATE ROLE secret LOGIN PASSWORD '%s'", pgPassword),
	} {
		if _, err := c.Exec(ctx, q).ReadAll(); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// idleSession is the idle_session_timeout of PostgreSQL's user idler, and
// the wait_timeout MariaDB's sessions ask for in tests.
const idleSession = 4 * time.Second

// startMariaDB starts a MariaDB server of its own with connect_timeout,
// and makes its users: app, who logs in without a password, and secret,
// who logs in with mysqlPassword.
func startMariaDB(w testserver.Where, port int, connectTimeout time.Duration) error {
	m, err := testserver.InitMariaDB(w.Root, "mariadb")
	if err != nil {
		return err
	}
	// The socket reaches the server from any network namespace.
	root := mysql.NewConfig()
	root.User, root.Net, root.Addr = "root", "unix", m.Socket()
	db := func() (*sql.DB, error) {
		c, err := mysql.NewConnector(root)
		if err != nil {
			return nil, err
		}
		return sql.OpenDB(c), nil
	}
	ready := func(ctx context.Context) error {
		d, err := db()
		if err != nil {
			return err
		}
		defer d.Close()
		return d.PingContext(ctx)
	}
	err = m.Start(w.Host, port, w.Spawn, w.Register, ready, "--skip-log-bin", "--max-connections=200",
		fmt.Sprintf("--connect-timeout=%d", connectTimeout/time.Second))
	if err != nil {
		return err
	}
	d, err := db()
	if err != nil {
		return err
	}
	defer d.Close()
	for _, q := range []string{
		"CREATE USER 'app'@'%'",
		fmt.Sprintf("CREATE USER 'secret'@'%%' IDENTIFIED BY '%s'", mysqlPassword),
	} {
		if _, err := d.Exec(q); err != nil {
			return err
		}
	}
	return nil
}

// examplePostgres starts a PostgreSQL server for an example of -h that
// names url, and returns the URL that logs in to it as the example's does,
// as app to the database app.
func examplePostgres(t *testing.T, url string) string {
	t.Helper()
	require.True(t, strings.HasPrefix(url, "postgres://app@"), "an example logs in as app: %s", url)
	w := testserver.Where{Root: serverRoot(t), Host: "127.0.0.1", Spawn: spawn, Register: t.Cleanup}
	port, err := testserver.OnFreePort(func(port int) error { return startPostgres(w, port, time.Minute) })
	var u testserver.Unavailable
	if errors.As(err, &u) {
		testserver.Skip(t, u.Reason)
	}
	require.NoError(t, err)
	return fmt.Sprintf("postgres://app@127.0.0.1:%d/app?sslmode=disable", port)
}

// serverRoot makes a folder for servers' files that the users they run
// as may enter, removed at cleanup.
func serverRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "keepalive-path-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	return dir
}

// pathCase is one run of keepalive path against a real server and the
// truth it must find. Durations within a range: the server's own timers
// (Redis counts idleness in whole seconds) and a loaded machine.
type pathCase struct {
	name    string
	target  string
	args    []string
	want    map[string]any // JSON fields that must be exactly these
	diedMin time.Duration  // for the server's own ends; 0: died is in want
	diedMax time.Duration
	refused bool // some connections refused, as sshd's MaxStartups does
}

// check checks the JSON object of a run against c's truth.
func (c pathCase) check(t *testing.T, out string) {
	t.Helper()
	var j map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &j), out)
	for k, v := range c.want {
		assert.Equal(t, v, j[k], k)
	}
	if c.diedMax > 0 {
		died, err := time.ParseDuration(fmt.Sprint(j["died"]))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, died, c.diedMin, "died")
		assert.LessOrEqual(t, died, c.diedMax, "died")
		// The path kept the flows until the server ended them.
		assert.Equal(t, died.Truncate(time.Second).String(), j["survived"], "survived")
	}
	if c.refused {
		assert.NotZero(t, j["refused"], "refused")
	} else {
		assert.Zero(t, j["refused"], "refused")
	}
}

// serverEnd is what an answer of server-close holds: the server's own
// end after timeout, measured within 50ms before to 300ms after, or
// later by extra.
func serverEnd(end string, spoke bool, session string, timeout, extra time.Duration) (map[string]any, time.Duration, time.Duration) {
	return map[string]any{"cause": "server-close", "end": end, "spoke": spoke, "session": session, "lower_bound": true, "heard": "0s"},
		timeout - 50*time.Millisecond, timeout + 300*time.Millisecond + extra
}

// TestPathRealServers runs keepalive path on loopback, where nothing
// forgets a flow, against real servers: every answer is the server's own
// behaviour, never the path's.
func TestPathRealServers(t *testing.T) {
	t.Parallel()
	const s3 = 3 * time.Second
	w := testserver.Where{Root: serverRoot(t), Host: "127.0.0.1", Spawn: spawn, Register: t.Cleanup}
	srv := startServers(t, w, serverConfig{
		authTimeout: s3, connectTimeout: s3, redisTimeout: s3, redisKeepalive: 2 * time.Second,
		loginGrace: s3, maxStartups: 4, headerTimeout: s3,
	}, func() (int, error) { return testserver.FreePort() })
	pgURL := func(user, pw, db string) string {
		return dbURL("postgres", user, pw, srv.addr(srv.pg), db, "sslmode=disable")
	}
	myURL := func(user, pw, params string) string {
		return dbURL("mysql", user, pw, srv.addr(srv.maria), "", params)
	}
	none := func(max, session string) map[string]any {
		return map[string]any{"cause": "none", "end": "none", "survived": max, "died": "0s", "lower_bound": true, "heard": "0s", "session": session}
	}

	var cases []pathCase
	add := func(c pathCase) { cases = append(cases, c) }
	// socat's accept queue holds 5, and 14 connections arrive: at a pace
	// it keeps up with, and a connection it never accepted, if any, is
	// no loss on loopback.
	add(pathCase{name: "socat, default backlog", target: srv.addr(srv.socat), args: []string{"-max", "12s"}, want: none("12s", "")})
	c := pathCase{name: "PostgreSQL, authentication_timeout", target: srv.addr(srv.pg), args: []string{"-max", "8s"}}
	c.want, c.diedMin, c.diedMax = serverEnd("fin", false, "", s3, 0)
	add(c)
	// Logged in, the sessions outlive authentication_timeout.
	add(pathCase{name: "PostgreSQL, logged in", target: pgURL("app", "", "app"), args: []string{"-max", "6s"}, want: none("6s", "postgres")})
	c = pathCase{name: "PostgreSQL, idle_session_timeout", target: pgURL("idler", "", "postgres"), args: []string{"-max", "8s"}}
	// The server counts from its ReadyForQuery, a little before the
	// login returns.
	c.want, c.diedMin, c.diedMax = serverEnd("fin", false, "postgres", idleSession-100*time.Millisecond, 100*time.Millisecond)
	add(c)
	add(pathCase{name: "PostgreSQL, password", target: pgURL("secret", pgPassword, "postgres"), args: []string{"-max", "4s"}, want: none("4s", "postgres")})
	c = pathCase{name: "MariaDB, connect_timeout", target: srv.addr(srv.maria), args: []string{"-max", "8s"}}
	c.want, c.diedMin, c.diedMax = serverEnd("reset", true, "", s3, 0)
	add(c)
	add(pathCase{name: "MariaDB, logged in", target: myURL("app", "", ""), args: []string{"-max", "6s"}, want: none("6s", "mysql")})
	c = pathCase{name: "MariaDB, wait_timeout", target: myURL("secret", mysqlPassword, fmt.Sprintf("wait_timeout=%d", idleSession/time.Second)), args: []string{"-max", "8s"}}
	c.want, c.diedMin, c.diedMax = serverEnd("reset", false, "mysql", idleSession, 0)
	add(c)
	// Redis counts idleness in whole seconds, once in a while.
	c = pathCase{name: "Redis, timeout", target: srv.addr(srv.redisTimeout), args: []string{"-max", "8s"}}
	c.want, c.diedMin, c.diedMax = serverEnd("fin", false, "", s3, 1200*time.Millisecond)
	add(c)
	// Its probes after 2s of silence are heard by the flows tested at 3s
	// and longer, and again as long after.
	add(pathCase{name: "Redis, tcp-keepalive", target: srv.addr(srv.redisKeepalive), args: []string{"-max", "12s"},
		want: map[string]any{"cause": "none", "end": "none", "survived": "2s", "died": "0s", "heard": "3s", "lower_bound": true}})
	// A greeting, then the end at LoginGraceTime; past MaxStartups 4,
	// connections refused at once.
	c = pathCase{name: "sshd, LoginGraceTime and MaxStartups", target: srv.addr(srv.sshd), args: []string{"-max", "10s"}, refused: true}
	c.want, c.diedMin, c.diedMax = serverEnd("fin", true, "", s3, 0)
	add(c)
	c = pathCase{name: "nginx, client_header_timeout", target: srv.addr(srv.nginx), args: []string{"-max", "8s"}}
	c.want, c.diedMin, c.diedMax = serverEnd("fin", false, "", s3, 0)
	add(c)

	t.Run("answers", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				start := time.Now()
				r := runArgs(context.Background(), append(append([]string{"path", "-json"}, c.args...), c.target)...)
				t.Logf("keepalive path -json %s %s, %v: %s%s", strings.Join(c.args, " "), c.target, time.Since(start).Round(time.Millisecond), r.stdout, r.stderr)
				require.Equal(t, exitOK, r.code, r.stderr)
				assert.Empty(t, r.stderr)
				c.check(t, r.stdout)
				assertNoSecret(t, r)
			})
		}
	})

	t.Run("credentials", func(t *testing.T) {
		for _, tt := range []struct {
			name   string
			args   []string
			code   int
			stderr string // a regular expression; empty: success, with a report
		}{
			{"PostgreSQL, report", []string{"-max", "3s", pgURL("secret", pgPassword, "postgres")}, exitOK, ""},
			{"PostgreSQL, wrong password", []string{pgURL("secret", wrongPassword, "postgres")}, exitFail,
				`^keepalive path: 127\.0\.0\.1:\d+ cannot log in to PostgreSQL as "secret": password authentication failed for user "secret" \(SQLSTATE 28P01\)\n$`},
			{"MySQL, wrong password", []string{myURL("secret", wrongPassword, "")}, exitFail,
				`^keepalive path: 127\.0\.0\.1:\d+ cannot log in to MySQL as "secret": Access denied for user 'secret'@'(localhost|127\.0\.0\.1)' \(using password: YES\) \(error 1045\)\n$`},
			{"PostgreSQL, nothing listening", []string{dbURL("postgres", "secret", pgPassword, closedPort(t), "postgres", "")}, exitFail,
				`^keepalive path: 127\.0\.0\.1:\d+ refused the connection: dial tcp 127\.0\.0\.1:\d+: connect: connection refused\n$`},
			{"MySQL, nothing listening", []string{dbURL("mysql", "secret", mysqlPassword, closedPort(t), "", "")}, exitFail,
				`^keepalive path: 127\.0\.0\.1:\d+ refused the connection: dial tcp 127\.0\.0\.1:\d+: connect: connection refused\n$`},
			{"a bad port", []string{dbURL("postgres", "secret", pgPassword, "127.0.0.1:99999", "postgres", "")}, exitUsage,
				`^keepalive path: the PostgreSQL URL cannot be read: invalid port\nusage: `},
			// Not encoded: a URL no one can read, and its password
			// still not printed.
			{"a password not encoded", []string{"postgres://secret:" + pgPassword + "@127.0.0.1:5432/postgres"}, exitUsage,
				`^keepalive path: the PostgreSQL URL cannot be read: invalid port\nusage: `},
			{"a MySQL password not encoded", []string{"mysql://secret:" + mysqlPassword + "@127.0.0.1:3306/"}, exitUsage,
				`^keepalive path: the MySQL URL`},
		} {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				r := runArgs(context.Background(), append([]string{"path"}, tt.args...)...)
				t.Logf("status %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
				assert.Equal(t, tt.code, r.code)
				assertNoSecret(t, r)
				if tt.stderr == "" {
					assert.Empty(t, r.stderr)
					assert.Contains(t, r.stdout, "session:         logged in to PostgreSQL as \"secret\", database \"postgres\"")
					return
				}
				assert.Empty(t, r.stdout)
				assert.Regexp(t, tt.stderr, r.stderr)
			})
		}
	})
}

// dbURL returns scheme://user:password@addr/db?query, each part encoded
// as a URL needs.
func dbURL(scheme, user, password, addr, db, query string) string {
	u := url.URL{Scheme: scheme, User: url.User(user), Host: addr, Path: "/" + db, RawQuery: query}
	if password != "" {
		u.User = url.UserPassword(user, password)
	}
	return u.String()
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// assertNoSecret checks that a run printed none of the passwords, as
// written or as a URL encodes them.
func assertNoSecret(t *testing.T, r runResult) {
	t.Helper()
	for _, pw := range []string{pgPassword, mysqlPassword, wrongPassword} {
		encoded := strings.TrimPrefix(url.UserPassword("", pw).String(), ":")
		for _, form := range []string{pw, encoded, url.QueryEscape(pw)} {
			assert.NotContains(t, r.stdout, form, "a password in the output")
			assert.NotContains(t, r.stderr, form, "a password in the errors")
		}
	}
}

// labTimeout is how long the lab's firewall remembers an idle flow in
// TestPathRealServersLab.
const labTimeout = 5 * time.Second

// TestPathRealServersLab runs keepalive path against the same servers
// behind the lab's firewall, which forgets idle flows after labTimeout:
// the path's timeout is found where the server lets a connection be idle
// that long (logged in, where it ends connections that do not log in
// sooner), and the server's where it ends connections first.
func TestPathRealServersLab(t *testing.T) {
	t.Parallel()
	const s3, long = 3 * time.Second, 20 * time.Second
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: labTimeout, Tag: "kasrv"})
	dial := func(ctx context.Context, network, address string) (c net.Conn, err error) {
		err = lab.Client(func() error {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
	w := testserver.Where{Root: serverRoot(t), Host: lab.ServerAddr().String(), Spawn: testserver.NetnsSpawn(t, lab.Server), Register: t.Cleanup, Dial: dial}
	// The lab's namespace is the servers' own: any port will do.
	next := 5000
	var mu sync.Mutex
	srv := startServers(t, w, serverConfig{
		authTimeout: s3, connectTimeout: s3, redisTimeout: long, redisKeepalive: 2 * time.Second,
		loginGrace: long, headerTimeout: long,
	}, func() (int, error) { mu.Lock(); defer mu.Unlock(); next++; return next, nil })
	drop := func(session string) map[string]any {
		return map[string]any{"cause": "drop", "end": "unanswered", "survived": "4s", "died": "5s", "lower_bound": false, "heard": "0s", "session": session, "spoke": false}
	}
	var cases []pathCase
	add := func(c pathCase) { cases = append(cases, c) }
	add(pathCase{name: "socat", target: srv.addr(srv.socat), args: []string{"-max", "10s"}, want: drop("")})
	c := pathCase{name: "PostgreSQL, authentication_timeout first", target: srv.addr(srv.pg), args: []string{"-max", "10s"}}
	c.want, c.diedMin, c.diedMax = serverEnd("fin", false, "", s3, 0)
	add(c)
	add(pathCase{name: "PostgreSQL, logged in", target: fmt.Sprintf("postgres://app@%s/app?sslmode=disable", srv.addr(srv.pg)), args: []string{"-max", "10s"}, want: drop("postgres")})
	c = pathCase{name: "MariaDB, connect_timeout first", target: srv.addr(srv.maria), args: []string{"-max", "10s"}}
	c.want, c.diedMin, c.diedMax = serverEnd("reset", true, "", s3, 0)
	add(c)
	add(pathCase{name: "MariaDB, logged in", target: fmt.Sprintf("mysql://app@%s/", srv.addr(srv.maria)), args: []string{"-max", "10s"}, want: drop("mysql")})
	add(pathCase{name: "Redis", target: srv.addr(srv.redisTimeout), args: []string{"-max", "10s"}, want: drop("")})
	// The firewall would forget after 5s but never sees that silence.
	add(pathCase{name: "Redis, tcp-keepalive", target: srv.addr(srv.redisKeepalive), args: []string{"-max", "12s"},
		want: map[string]any{"cause": "none", "end": "none", "survived": "2s", "died": "0s", "heard": "3s", "lower_bound": true}})
	add(pathCase{name: "sshd", target: srv.addr(srv.sshd), args: []string{"-max", "8s"}, want: drop("")})
	add(pathCase{name: "nginx", target: srv.addr(srv.nginx), args: []string{"-max", "10s"}, want: drop("")})
	t.Run("answers", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				r, took := runPath(t, lab.Client, nil, append(append([]string{"-json"}, c.args...), c.target)...)
				t.Logf("keepalive path -json %s %s through a firewall forgetting after %v, %v: %s%s", strings.Join(c.args, " "), c.target, labTimeout, took.Round(time.Millisecond), r.stdout, r.stderr)
				require.Equal(t, exitOK, r.code, r.stderr)
				assert.Empty(t, r.stderr)
				c.check(t, r.stdout)
			})
		}
	})
	t.Run("no answer", func(t *testing.T) {
		// A server whose every packet the path loses: the login never
		// starts, and the error holds no password.
		t.Parallel()
		dead := netlab.New(t, netlab.Options{Loss: 100, Tag: "kasrv"})
		target := dbURL("postgres", "secret", pgPassword, net.JoinHostPort(dead.ServerAddr().String(), "5432"), "postgres", "")
		r, took := runPath(t, dead.Client, nil, "-timeout", "1s", target)
		t.Logf("%v: %s", took.Round(time.Millisecond), r.stderr)
		assert.Equal(t, exitFail, r.code)
		assert.Regexp(t, `^keepalive path: 10\.231\.2\.2:5432 did not answer within 1s: dial tcp 10\.231\.2\.2:5432: i/o timeout\n$`, r.stderr)
		assertNoSecret(t, r)
	})
}
