package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/idletimeout"
)

// suggestOutput is what "keepalive suggest" prints for the path to addr:
// the Config for idleTimeout and detect, and why.
func suggestOutput(t *testing.T, idleTimeout, detect time.Duration, addr string) string {
	t.Helper()
	r := runArgs(context.Background(), "suggest", "-idle-timeout", idleTimeout.String(), "-detect", detect.String())
	require.Equal(t, exitOK, r.code, r.stderr)
	return strings.Replace(r.stdout, " HOST:PORT\n", " "+addr+"\n", 1)
}

// measuredHeader and boundHeader are the lines that introduce the Config:
// for a path whose timeout was measured, and for one known only to keep
// idle flows for survived.
func measuredHeader(survived time.Duration) string {
	return "\nthe Config for this path, as keepalive suggest -idle-timeout " + survived.String() + " -detect 2m0s makes it:\n"
}

func boundHeader(survived time.Duration, why string) string {
	return "\na Config safe up to " + survived.String() + " of silence and no further (" + why + "), as keepalive suggest -idle-timeout " + survived.String() + " -detect 2m0s makes it:\n"
}

// TestPrintPath checks the report for each way a search ends: what was
// kept and lost, and how, what else was seen, then the Config that
// keepalive suggest prints for the longest silence kept, labelled as the
// path's timeout only when one was measured.
func TestPrintPath(t *testing.T) {
	const addr = "192.0.2.1:5432"
	pg := pathTarget{addr: addr, server: "PostgreSQL", user: "app", db: "orders"}
	my := pathTarget{addr: addr, server: "MySQL", user: "app"}
	for _, tt := range []struct {
		name   string
		r      idletimeout.Result
		target pathTarget // addr alone when zero
		max    time.Duration
		head   string // the report down to the Config
		config string // the line that introduces it
		tail   string // after keepalive suggest's output
	}{
		{
			name: "drop",
			r:    idletimeout.Result{Survived: 345 * time.Second, Died: 351 * time.Second, Cause: idletimeout.CauseDrop, End: idletimeout.EndUnanswered, Elapsed: 356789 * time.Millisecond, Flows: 331, Passes: 1, Retests: 1},
			head: "path to 192.0.2.1:5432: the idle timeout is more than 5m45s, at most 5m51s\n" +
				"kept:            5m45s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            5m51s of silence (drop): the keepalive probes went unanswered, on two more connections too; something on the path forgets idle flows without a word\n" +
				"took:            5m56.789s, 331 connections, 1 pass; 1 loss tested again, 0 of them lost packets rather than a forgotten flow\n",
			config: measuredHeader(345 * time.Second),
		},
		{
			name: "reset answering the probes",
			r:    idletimeout.Result{Survived: 5 * time.Second, Died: 6 * time.Second, Cause: idletimeout.CauseReset, End: idletimeout.EndProbeReset, Elapsed: 6005 * time.Millisecond, Flows: 32, Passes: 1, Retests: 2, Spurious: 1, Unaccepted: 1},
			max:  30 * time.Second,
			head: "path to 192.0.2.1:5432: the idle timeout is more than 5s, at most 6s\n" +
				"kept:            5s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            6s of silence (reset): a reset answered the keepalive probes, on a second connection too; something on the path rejects the flows it forgot\n" +
				"note:            1 connection was reset at the first probe although the path kept that silence: the server had never accepted it (its listen queue overflowed), not the path\n" +
				"took:            6.005s, 32 connections, 1 pass; 2 losses tested again, 1 of them lost packets rather than a forgotten flow\n",
			config: measuredHeader(5 * time.Second),
		},
		{
			name: "a middlebox resets the flows it forgets",
			r:    idletimeout.Result{Survived: 349 * time.Second, Died: 350012 * time.Millisecond, Cause: idletimeout.CauseReset, End: idletimeout.EndReset, Elapsed: 525 * time.Second, Flows: 331, Passes: 1},
			head: "path to 192.0.2.1:5432: the idle timeout is 5m50.012s\n" +
				"kept:            5m49s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            5m50.012s of silence (reset): something on the path reset the connections by itself, counting keepalive probes as activity, as a server does not; it resets the flows it forgets\n" +
				"took:            8m45s, 331 connections, 1 pass\n",
			config: measuredHeader(349 * time.Second),
		},
		{
			name: "server-close, nothing sent",
			r:    idletimeout.Result{Survived: 60 * time.Second, Died: 60183 * time.Millisecond, Cause: idletimeout.CauseServerClose, End: idletimeout.EndFIN, Elapsed: 60552 * time.Millisecond, Flows: 331, Passes: 1},
			head: "path to 192.0.2.1:5432: the server ends connections after 1m0.183s; the path kept them that long\n" +
				"kept:            1m0s of silence, until the server ended the connections: the path's own idle timeout, if it has one, is longer, and hidden by the server's\n" +
				"lost:            1m0.183s of silence (server-close, FIN): the server ended connections on which nothing was sent, without having sent anything: a timeout for connections that do not log in or send a request (PostgreSQL's authentication_timeout, nginx's client_header_timeout), or for idle ones (Redis's timeout)\n" +
				"note:            a server's timeout for connections that do not log in hides the path; for PostgreSQL, MySQL or MariaDB, a URL that logs in (postgres://USER@HOST:PORT/DB, mysql://USER:PASSWORD@HOST:PORT/DB) measures past it\n" +
				"took:            1m0.552s, 331 connections, 1 pass\n",
			config: boundHeader(60*time.Second, "the server ends connections then, so the path's own idle timeout is unknown"),
			tail:   "note: no Config keeps a connection open past 1m0.183s without data: the server counts only data\n",
		},
		{
			name: "server-close after a greeting, by reset",
			r:    idletimeout.Result{Survived: 10 * time.Second, Died: 10007 * time.Millisecond, Cause: idletimeout.CauseServerClose, End: idletimeout.EndReset, Spoke: true, Elapsed: 10176 * time.Millisecond, Flows: 32, Passes: 1, Refused: 3},
			max:  30 * time.Second,
			head: "path to 192.0.2.1:5432: the server ends connections after 10.007s; the path kept them that long\n" +
				"kept:            10s of silence, until the server ended the connections: the path's own idle timeout, if it has one, is longer, and hidden by the server's\n" +
				"lost:            10.007s of silence (server-close, reset): the server sent data first (a greeting) and ended each connection that did not answer it: a login timeout (MySQL's connect_timeout, sshd's LoginGraceTime)\n" +
				"note:            3 connections were ended by the server within a second of opening: it limits connections (sshd's MaxStartups, MySQL's max_connections); -flows lowers how many are open at once\n" +
				"note:            a server's timeout for connections that do not log in hides the path; for PostgreSQL, MySQL or MariaDB, a URL that logs in (postgres://USER@HOST:PORT/DB, mysql://USER:PASSWORD@HOST:PORT/DB) measures past it\n" +
				"took:            10.176s, 32 connections, 1 pass\n",
			config: boundHeader(10*time.Second, "the server ends connections then, so the path's own idle timeout is unknown"),
			tail:   "note: no Config keeps a connection open past 10.007s without data: the server counts only data\n",
		},
		{
			name:   "idle PostgreSQL sessions ended",
			r:      idletimeout.Result{Survived: 4 * time.Second, Died: 4992 * time.Millisecond, Cause: idletimeout.CauseServerClose, End: idletimeout.EndFIN, Elapsed: 5086 * time.Millisecond, Flows: 12, Passes: 1},
			target: pg,
			max:    20 * time.Second,
			head: "path to 192.0.2.1:5432: the server ends idle sessions after 4.992s; the path kept them that long\n" +
				"session:         logged in to PostgreSQL as \"app\", database \"orders\"; each connection was held as an idle session\n" +
				"kept:            4s of silence, until the server ended the connections: the path's own idle timeout, if it has one, is longer, and hidden by the server's\n" +
				"lost:            4.992s of silence (server-close, FIN): the server ended idle sessions by itself: its timeout for idle sessions (PostgreSQL's idle_session_timeout)\n" +
				"took:            5.086s, 12 connections, 1 pass\n",
			config: boundHeader(4*time.Second, "the server ends connections then, so the path's own idle timeout is unknown"),
			tail:   "note: no Config keeps a connection open past 4.992s without data: the server counts only data\n",
		},
		{
			name:   "idle MySQL sessions, dropped by the path",
			r:      idletimeout.Result{Survived: 4 * time.Second, Died: 5 * time.Second, Cause: idletimeout.CauseDrop, End: idletimeout.EndUnanswered, Elapsed: 9707 * time.Millisecond, Flows: 12, Passes: 1, Retests: 2},
			target: my,
			max:    20 * time.Second,
			head: "path to 192.0.2.1:5432: the idle timeout is more than 4s, at most 5s\n" +
				"session:         logged in to MySQL as \"app\"; each connection was held as an idle session\n" +
				"kept:            4s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            5s of silence (drop): the keepalive probes went unanswered, on two more connections too; something on the path forgets idle flows without a word\n" +
				"took:            9.707s, 12 connections, 1 pass; 2 losses tested again, 0 of them lost packets rather than a forgotten flow\n",
			config: measuredHeader(4 * time.Second),
		},
		{
			name:   "none within -max, the URL's keepalive set aside",
			r:      idletimeout.Result{Survived: 2 * time.Hour, Cause: idletimeout.CauseNone, Elapsed: 7200010 * time.Millisecond, Flows: 20, Passes: 1, Resent: 2},
			target: pathTarget{addr: addr, server: "PostgreSQL", user: "app", urlKeepalive: keepalive.Config{Idle: 30 * time.Second}},
			head: "path to 192.0.2.1:5432: no idle timeout within -max 2h0m0s\n" +
				"session:         logged in to PostgreSQL as \"app\"; each connection was held as an idle session\n" +
				"kept:            2h0m0s of silence (-max: the longest silence tested)\n" +
				"lost:            none (none): the path keeps idle flows 2h0m0s or longer\n" +
				"note:            2 connections had their SYN sent again: the server's listen queue was full, or a packet was lost; the connects slowed down\n" +
				"note:            the URL's keepalive (idle=30s) was not used while measuring: path sets its own probes\n" +
				"took:            2h0m0.01s, 20 connections, 1 pass\n",
			config: boundHeader(2*time.Hour, "nothing was lost within -max 2h0m0s, and no longer silence was tested"),
		},
		{
			name: "server probes",
			r:    idletimeout.Result{Survived: 15 * time.Second, Heard: 16 * time.Second, Cause: idletimeout.CauseNone, Elapsed: 33 * time.Second, Flows: 42, Passes: 1},
			max:  40 * time.Second,
			head: "path to 192.0.2.1:5432: no idle timeout within 16s, the longest silence measurable here\n" +
				"kept:            15s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            none (none), within what could be measured\n" +
				"note:            the server sends keepalive probes or data of its own within 16s of silence, again and again: they keep the path open, so no longer silence can be measured from here\n" +
				"took:            33s, 42 connections, 1 pass\n",
			config: boundHeader(15*time.Second, "the server's own probes or data keep longer silences from the path"),
		},
		{
			name: "too short for a Config",
			r:    idletimeout.Result{Survived: 2 * time.Second, Died: 3 * time.Second, Cause: idletimeout.CauseDrop, End: idletimeout.EndUnanswered, Elapsed: 7500 * time.Millisecond, Flows: 6, Passes: 2},
			max:  10 * time.Second,
			head: "path to 192.0.2.1:5432: the idle timeout is more than 2s, at most 3s\n" +
				"kept:            2s of silence (a keepalive probe sent after it was answered)\n" +
				"lost:            3s of silence (drop): the keepalive probes went unanswered, on two more connections too; something on the path forgets idle flows without a word\n" +
				"took:            7.5s, 6 connections, 2 passes\n",
			config: measuredHeader(2 * time.Second),
		},
		{
			name: "nothing kept",
			r:    idletimeout.Result{Died: time.Second, Cause: idletimeout.CauseReset, End: idletimeout.EndProbeReset, Elapsed: 3 * time.Second, Flows: 12, Passes: 1},
			max:  10 * time.Second,
			head: "path to 192.0.2.1:5432: the idle timeout is at most 1s\n" +
				"kept:            no silence of 1s or more\n" +
				"lost:            1s of silence (reset): a reset answered the keepalive probes, on a second connection too; something on the path rejects the flows it forgot\n" +
				"took:            3s, 12 connections, 1 pass\n",
			config: measuredHeader(0),
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.r.Address = addr
			if tt.target.addr == "" {
				tt.target.addr = addr
			}
			var out bytes.Buffer
			c, serr := tt.r.Suggest(pathDetect)
			printPath(&env{stdout: &out}, tt.r, idletimeout.Options{Max: tt.max}, tt.target, c, serr, pathDetect)
			t.Logf("report:\n%s", out.String())
			head, rest, ok := strings.Cut(out.String(), tt.config)
			require.True(t, ok, "no Config part introduced by %q", tt.config)
			assert.Equal(t, tt.head, head)
			if serr != nil {
				assert.Equal(t, "none: "+lib(serr)+"\n", rest)
				return
			}
			assert.Equal(t, suggestOutput(t, tt.r.Survived, pathDetect, addr)+tt.tail, rest)
		})
	}
}

// TestPathJSON checks the -json object, with and without a Config: every
// field, durations as Go writes them.
func TestPathJSON(t *testing.T) {
	const addr = "192.0.2.1:5432"
	for _, tt := range []struct {
		r      idletimeout.Result
		server string
		want   map[string]any // without suggest and suggest_error
	}{
		{idletimeout.Result{Survived: 345 * time.Second, Died: 351 * time.Second, Cause: idletimeout.CauseDrop, End: idletimeout.EndUnanswered, Elapsed: 356789400 * time.Microsecond, Flows: 331, Passes: 1, Retests: 1},
			"",
			map[string]any{"session": "", "survived": "5m45s", "died": "5m51s", "lower_bound": false, "cause": "drop", "end": "unanswered", "spoke": false, "heard": "0s", "elapsed": "5m56.789s",
				"flows": 331.0, "passes": 1.0, "retests": 1.0, "spurious": 0.0, "unaccepted": 0.0, "refused": 0.0, "resent": 0.0}},
		{idletimeout.Result{Survived: 10 * time.Second, Died: 10007300 * time.Microsecond, Cause: idletimeout.CauseServerClose, End: idletimeout.EndReset, Spoke: true, Elapsed: 10176 * time.Millisecond, Flows: 32, Passes: 1, Refused: 2},
			"",
			map[string]any{"session": "", "survived": "10s", "died": "10.007s", "lower_bound": true, "cause": "server-close", "end": "reset", "spoke": true, "heard": "0s", "elapsed": "10.176s",
				"flows": 32.0, "passes": 1.0, "retests": 0.0, "spurious": 0.0, "unaccepted": 0.0, "refused": 2.0, "resent": 0.0}},
		{idletimeout.Result{Survived: 2 * time.Second, Died: 3 * time.Second, Cause: idletimeout.CauseReset, End: idletimeout.EndProbeReset, Elapsed: 3 * time.Second, Flows: 12, Passes: 2, Retests: 3, Spurious: 1, Unaccepted: 1, Resent: 4},
			"MySQL",
			map[string]any{"session": "mysql", "survived": "2s", "died": "3s", "lower_bound": false, "cause": "reset", "end": "probe-reset", "spoke": false, "heard": "0s", "elapsed": "3s",
				"flows": 12.0, "passes": 2.0, "retests": 3.0, "spurious": 1.0, "unaccepted": 1.0, "refused": 0.0, "resent": 4.0}},
		{idletimeout.Result{Survived: 15 * time.Second, Heard: 16 * time.Second, Cause: idletimeout.CauseNone, Elapsed: 33 * time.Second, Flows: 42, Passes: 1},
			"PostgreSQL",
			map[string]any{"session": "postgres", "survived": "15s", "died": "0s", "lower_bound": true, "cause": "none", "end": "none", "spoke": false, "heard": "16s", "elapsed": "33s",
				"flows": 42.0, "passes": 1.0, "retests": 0.0, "spurious": 0.0, "unaccepted": 0.0, "refused": 0.0, "resent": 0.0}},
	} {
		tt.r.Address = addr
		tt.want["address"] = addr
		tt.want["detect"] = "2m0s"
		c, serr := tt.r.Suggest(pathDetect)
		if serr != nil {
			tt.want["suggest_error"] = lib(serr)
		} else {
			tt.want["suggest"] = c.String()
		}
		b, err := json.Marshal(newPathJSON(tt.r, pathTarget{addr: addr, server: tt.server}, c, serr, pathDetect))
		require.NoError(t, err)
		var got map[string]any
		require.NoError(t, json.Unmarshal(b, &got))
		assert.Equal(t, tt.want, got)
	}
}

// TestPathProgressLine checks the line drawn while a search runs.
func TestPathProgressLine(t *testing.T) {
	for _, tt := range []struct {
		p    idletimeout.Progress
		want string
	}{
		{idletimeout.Progress{Elapsed: 300 * time.Millisecond, Pass: 1, Open: 1}, "0s: 1 connection open; nothing known yet"},
		{idletimeout.Progress{Elapsed: 75500 * time.Millisecond, Pass: 1, Open: 200, Survived: 74 * time.Second}, "1m15s: 200 connections open; kept 1m14s of silence, none lost yet"},
		{idletimeout.Progress{Elapsed: 4 * time.Second, Pass: 1, Open: 5, Died: 3 * time.Second}, "4s: 5 connections open; lost 3s of silence, none kept yet"},
		{idletimeout.Progress{Elapsed: 90 * time.Second, Pass: 2, Open: 8, Survived: 60 * time.Second, Died: 70 * time.Second}, "1m30s, pass 2: 8 connections open; kept 1m0s of silence, lost 1m10s"},
	} {
		assert.Equal(t, tt.want, progressLine(tt.p))
	}
}

// TestPathTarget checks what path takes for its argument: HOST:PORT, or a
// database URL it logs in with, whose password appears in no error; and
// what it refuses, before anything is dialed.
func TestPathTarget(t *testing.T) {
	const pw = "s3cr%40t-pw"    // as written in the URLs
	const plainPW = "s3cr@t-pw" // decoded
	for _, tt := range []struct {
		arg          string
		addr, server string
		user, db     string
		ka           keepalive.Config
		err          string // the error, if any
	}{
		{arg: "db.internal:5432", addr: "db.internal:5432"},
		{arg: "postgres://app:" + pw + "@db.internal:6432/orders?sslmode=disable", addr: "db.internal:6432", server: "PostgreSQL", user: "app", db: "orders"},
		{arg: "postgresql://app@db.internal/orders?keepalives_idle=30&sslmode=disable", addr: "db.internal:5432", server: "PostgreSQL", user: "app", db: "orders", ka: keepalive.Config{Idle: 30 * time.Second}},
		{arg: "mysql://app:" + pw + "@db.internal:3307/orders", addr: "db.internal:3307", server: "MySQL", user: "app", db: "orders"},
		{arg: "mysql://app:" + pw + "@db.internal/", addr: "db.internal:3306", server: "MySQL", user: "app"},
		{arg: "db.internal", err: `HOST:PORT "db.internal" is not host:port: address db.internal: missing port in address`},
		{arg: "redis://:" + pw + "@db.internal:6379", err: `the URL's scheme "redis" is not one path logs in with: postgres://, postgresql:// or mysql://`},
		{arg: "postgres://app:" + pw + "@db.internal:6432/orders?keepalives_idle=0", err: `invalid value "0" for connection option "keepalives_idle"`},
		{arg: "postgres://app:" + pw + "@db.internal:bad/orders", err: "the PostgreSQL URL cannot be read: invalid port"},
		{arg: "postgres://app:s3cr%zzt-pw@db.internal/orders", err: "invalid percent-encoded token"},
		{arg: "postgres://app:" + plainPW + "@db.internal/orders", err: "the PostgreSQL URL cannot be read: " + urlHint},
		{arg: "postgres://app:" + pw + "@/orders?host=/run/postgresql", err: "the PostgreSQL URL names a Unix socket (/run/postgresql): path measures TCP"},
		{arg: "mysql://app:" + pw + "@db.internal:bad/orders", err: "the MySQL URL cannot be read: " + urlHint},
		{arg: "mysql://app:" + plainPW + "/x@db.internal/orders", err: "the MySQL URL has more than a database after the host: " + urlHint},
		{arg: "mysql://app:" + pw + "@/orders", err: "the MySQL URL has no host"},
		{arg: "mysql://app:" + pw + "@db.internal/orders?tls=true", err: "the MySQL URL asks for TLS (tls=true): path cannot hold a MySQL session over TLS"},
		{arg: "mysql://app:" + pw + "@db.internal/orders?timeout=ten", err: "the MySQL URL's parameters"},
	} {
		t.Run(tt.arg, func(t *testing.T) {
			got, err := parseTarget(tt.arg)
			if tt.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.err)
				assert.IsType(t, usageError{}, err, "a bad command line")
				for _, part := range []string{pw, plainPW, "s3cr", "t-pw", "/x"} {
					assert.NotContains(t, err.Error(), part, "the password, or a part of it")
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.addr, got.addr)
			assert.Equal(t, tt.server, got.server)
			assert.Equal(t, tt.user, got.user)
			assert.Equal(t, tt.db, got.db)
			assert.Equal(t, tt.ka, got.urlKeepalive)
			assert.Equal(t, tt.server != "", got.dial != nil, "logs in")
		})
	}
}

// TestRedact checks the scrubbing of what path prints: the password of a
// URL, as written and decoded, from its user information or a password
// parameter, never survives.
func TestRedact(t *testing.T) {
	for _, tt := range []struct{ arg, text, want string }{
		{"postgres://app:pa%20ss@h/db", "cannot parse postgres://app:pa%20ss@h/db: pa ss", "cannot parse postgres://app:xxxxx@h/db: xxxxx"},
		{"mysql://app:p:w@h/db", "password p:w", "password xxxxx"},
		{"postgres://h/db?password=hunter2&sslmode=disable", "password=hunter2", "password=xxxxx"},
		{"postgres://app@h/db", "nothing to hide", "nothing to hide"},
	} {
		assert.Equal(t, tt.want, redact(tt.text, urlSecrets(tt.arg)), tt.arg)
	}
}
