package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keepalive-go/keepalive"
)

// What path measures, when the target is a database URL: sessions logged
// in and left idle, so that the server's timeout for connections that do
// not log in (PostgreSQL's authentication_timeout, MySQL's
// connect_timeout) does not hide the path.

// pathTarget is what path measures: an address, and how to log in there.
type pathTarget struct {
	addr string // HOST:PORT
	// server is the server logged in to, "PostgreSQL" or "MySQL"; empty
	// for plain connections.
	server   string
	user, db string
	// dial logs in at the address Find resolved; nil for plain
	// connections.
	dial func(ctx context.Context, network, address string) (net.Conn, error)
	// urlKeepalive is the keepalive a PostgreSQL URL asks for (its
	// keepalives_* keys), which path does not use while it measures; the
	// zero Config when it asks for none.
	urlKeepalive keepalive.Config
}

// sessionFlows is -flows for a database URL when none is given: a server
// has far fewer sessions to spare than connections (PostgreSQL's default
// max_connections is 100, MySQL's 151), and others need them too.
const sessionFlows = 20

// loginTimeout bounds each connect and login of a database URL when
// -timeout is not given.
const loginTimeout = 10 * time.Second

// parseTarget reads path's argument: HOST:PORT, or a postgres://,
// postgresql:// or mysql:// URL. Its errors never hold the password.
func parseTarget(arg string) (pathTarget, error) {
	scheme, _, isURL := strings.Cut(arg, "://")
	if !isURL {
		if err := checkHostPort(arg); err != nil {
			return pathTarget{}, err
		}
		return pathTarget{addr: arg}, nil
	}
	secrets := urlSecrets(arg)
	var t pathTarget
	var err error
	switch scheme {
	case "postgres", "postgresql":
		t, err = postgresTarget(arg)
	case "mysql":
		t, err = mysqlTarget(arg)
	default:
		return pathTarget{}, usagef("the URL's scheme %q is not one path logs in with: postgres://, postgresql:// or mysql://", scheme)
	}
	if err != nil {
		return pathTarget{}, usagef("%s", redact(message(err), secrets))
	}
	return t, nil
}

// postgresTarget reads a PostgreSQL URL as libpq would, keepalive keys
// included (keepalive.ParsePostgres), and the rest as pgx does, with the
// PG* environment variables and the password file.
func postgresTarget(arg string) (pathTarget, error) {
	ka, rest, err := keepalive.ParsePostgres(arg)
	if err != nil {
		return pathTarget{}, err
	}
	cfg, err := pgconn.ParseConfig(rest)
	if err != nil {
		return pathTarget{}, fmt.Errorf("the PostgreSQL URL cannot be read: %s", pgParseReason(err))
	}
	if cfg.Port == 0 {
		cfg.Port = 5432
	}
	t := pathTarget{
		addr:         net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port)),
		server:       "PostgreSQL",
		user:         cfg.User,
		db:           cfg.Database,
		urlKeepalive: ka,
	}
	if strings.HasPrefix(cfg.Host, "/") {
		return pathTarget{}, fmt.Errorf("the PostgreSQL URL names a Unix socket (%s): path measures TCP", cfg.Host)
	}
	if strings.ContainsAny(cfg.Host, "@/?#% ") {
		// Most likely part of a password not encoded.
		return pathTarget{}, errors.New("the PostgreSQL URL cannot be read: " + urlHint)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = loginTimeout
	}
	t.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		c := cfg.Copy()
		var dialErr error
		dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			conn, err := d.DialContext(ctx, network, address)
			dialErr = err
			return conn, err
		}
		c.DialFunc = dial
		// The host was resolved once, for every connection.
		c.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil }
		pc, err := pgconn.ConnectConfig(ctx, c)
		if dialErr != nil {
			return nil, dialErr
		}
		if err != nil {
			return nil, loginError{t.server, t.user, pgReason(err), err}
		}
		hc, err := pc.Hijack()
		if err != nil {
			pc.Close(ctx)
			return nil, loginError{t.server, t.user, err.Error(), err}
		}
		// Terminate: 'X' and the length of the message, 4.
		return &sessionConn{Conn: hc.Conn, bye: []byte{'X', 0, 0, 0, 4}}, nil
	}
	return t, nil
}

// urlHint is what to do about a URL that cannot be read, which path
// does not quote: its password may be what broke it.
const urlHint = "a character of the user, password or database that a URL reserves (@ : / ? # % and space) must be percent-encoded"

// pgParseReason is why pgx cannot read a connection string, without the
// string: pgx quotes it, its password masked as best it can, and an error
// of net/url quotes it whole, or in part.
func pgParseReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return urlHint
	}
	reason := err.Error()
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		if i := strings.LastIndex(reason, "`: "); i >= 0 {
			reason = reason[i+len("`: "):]
		}
	}
	return reason
}

// pgReason is why a PostgreSQL login failed, without pgx's framing (which
// names the user and database again): the server's message and SQLSTATE.
func pgReason(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s (SQLSTATE %s)", pe.Message, pe.Code)
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && errors.Unwrap(ce) != nil {
		return errors.Unwrap(ce).Error()
	}
	return err.Error()
}

// mysqlTarget reads mysql://USER:PASSWORD@HOST:PORT/DB?PARAMS: the
// parameters are go-sql-driver/mysql's (tls, ...), or session variables
// set at login.
func mysqlTarget(arg string) (pathTarget, error) {
	u, err := url.Parse(arg)
	if err != nil {
		// url.Error quotes the URL, or the part it could not read.
		return pathTarget{}, errors.New("the MySQL URL cannot be read: " + urlHint)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return pathTarget{}, errors.New("the MySQL URL has no host")
	}
	if port == "" {
		port = "3306"
	}
	if u.Fragment != "" || u.Opaque != "" {
		return pathTarget{}, errors.New("the MySQL URL is not mysql://USER:PASSWORD@HOST:PORT/DATABASE")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if strings.Contains(db, "/") {
		return pathTarget{}, errors.New("the MySQL URL has more than a database after the host: " + urlHint)
	}
	addr := net.JoinHostPort(host, port)
	// The driver reads its parameters from a DSN without the user and
	// password, which are set apart: a password may hold any character.
	dsn := "tcp(" + addr + ")/" + db
	if u.RawQuery != "" {
		dsn += "?" + u.RawQuery
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return pathTarget{}, fmt.Errorf("the MySQL URL's parameters: %w", err)
	}
	if cfg.TLSConfig != "" && cfg.TLSConfig != "false" {
		// The session's bytes would be TLS records that the driver
		// keeps to itself, and path reads the connection below it.
		return pathTarget{}, fmt.Errorf("the MySQL URL asks for TLS (tls=%s): path cannot hold a MySQL session over TLS", cfg.TLSConfig)
	}
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	if cfg.Timeout == 0 {
		cfg.Timeout = loginTimeout
	}
	// The driver would log the end of a session the server has already
	// ended.
	cfg.Logger = quietLogger{}
	t := pathTarget{addr: addr, server: "MySQL", user: cfg.User, db: db}
	t.dial = func(ctx context.Context, network, address string) (net.Conn, error) {
		c := cfg.Clone()
		var raw net.Conn
		var dialErr error
		c.DialFunc = func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			raw, dialErr = d.DialContext(ctx, "tcp", address)
			return raw, dialErr
		}
		connector, err := mysql.NewConnector(c)
		if err != nil {
			return nil, loginError{t.server, t.user, err.Error(), err}
		}
		dc, err := connector.Connect(ctx)
		if dialErr != nil {
			return nil, dialErr
		}
		if err != nil {
			return nil, loginError{t.server, t.user, mysqlReason(err), err}
		}
		return &sessionConn{Conn: raw, quit: dc.Close}, nil
	}
	return t, nil
}

// mysqlReason is why a MySQL login failed: the server's error, or the
// driver's.
func mysqlReason(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprintf("%s (error %d)", me.Message, me.Number)
	}
	return err.Error()
}

// quietLogger is go-sql-driver/mysql's logger, silent.
type quietLogger struct{}

func (quietLogger) Print(...any) {}

// loginError is a login that failed after the connection was made: the
// driver's error, and what of it path says.
type loginError struct {
	server, user, reason string
	err                  error
}

func (e loginError) Error() string {
	return fmt.Sprintf("cannot log in to %s as %q: %s", e.server, e.user, e.reason)
}

func (e loginError) Unwrap() error { return e.err }

// sessionConn is a logged-in session handed to the search: reads and
// writes go to the connection under the driver, and Close ends the
// session first, with bye written or quit called.
type sessionConn struct {
	net.Conn
	bye  []byte       // written before the connection is closed
	quit func() error // or this, which closes it
}

// NetConn returns the connection under the session, for keepalive.Set and
// TCP_INFO.
func (c *sessionConn) NetConn() net.Conn { return c.Conn }

// sessionBye bounds the write that ends a session: a path that forgot the
// flow takes it without a word.
const sessionBye = 100 * time.Millisecond

func (c *sessionConn) Close() error {
	if c.quit != nil {
		c.Conn.SetDeadline(time.Now().Add(sessionBye))
		return c.quit()
	}
	c.Conn.SetWriteDeadline(time.Now().Add(sessionBye))
	c.Conn.Write(c.bye)
	return c.Conn.Close()
}

// urlSecrets returns what of a URL must never be printed: its password,
// as written and decoded, from the user information and from a password
// parameter.
func urlSecrets(arg string) []string {
	var secrets []string
	add := func(s string) {
		if s == "" {
			return
		}
		secrets = append(secrets, s)
		if d, err := url.PathUnescape(s); err == nil && d != s {
			secrets = append(secrets, d)
		}
		if d, err := url.QueryUnescape(s); err == nil && d != s {
			secrets = append(secrets, d)
		}
	}
	_, rest, _ := strings.Cut(arg, "://")
	authority, _, _ := strings.Cut(rest, "/")
	authority, _, _ = strings.Cut(authority, "?")
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		if _, pw, ok := strings.Cut(authority[:i], ":"); ok {
			add(pw)
		}
	}
	if _, query, ok := strings.Cut(rest, "?"); ok {
		for _, kv := range strings.Split(query, "&") {
			if k, v, ok := strings.Cut(kv, "="); ok && (k == "password" || k == "passwd") {
				add(v)
			}
		}
	}
	return secrets
}

// redact replaces each secret in s with xxxxx, the longest first.
func redact(s string, secrets []string) string {
	secrets = slices.Clone(secrets)
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for range 2 { // a decoded secret may hold another
		for _, sec := range secrets {
			s = strings.ReplaceAll(s, sec, "xxxxx")
		}
	}
	return s
}
