package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/idletimeout"
)

// pathDetect is the default -detect of path: a vanished peer noticed
// within two minutes, as with the default Config.
const pathDetect = 2 * time.Minute

// pathFlowsDefault is the number of connections one pass holds for the
// default -max, for -h.
var pathFlowsDefault, _, _ = idletimeout.Plan(idletimeout.Options{})

// pathFlows10m is the same for -max 10m, for an example.
var pathFlows10m, _, _ = idletimeout.Plan(idletimeout.Options{Max: 10 * time.Minute})

var pathCommand = &command{
	name:    "path",
	args:    "[flags] HOST:PORT|URL",
	summary: "find the idle timeout of a path",
	help: fmt.Sprintf(`Finds the idle timeout of the path to HOST:PORT: after how long of silence
a firewall, NAT or load balancer on the way forgets a connection. It sends
keepalive probes and nothing else, not a byte of data, so any TCP server
will do and nothing is needed on the other end. Linux only.

It opens connections that stay silent and tests each after a different
silence, up to -max. It reports the longest silence a connection was kept
and the shortest that lost one, at most max(1s, 2%%) apart, and how it was
lost: its probes went unanswered (drop), or a reset came back or came by
itself (reset); none when nothing was lost within -max. Every loss is
tested again on two more connections (one more for a reset) before it is
believed. The answer comes as soon as it is known: for a timeout T, about
T + max(1s, 2%%) + 2 × -count × -interval + 2s after the start, and after
-max only when nothing is lost. On a terminal, progress is drawn on
stderr: the time, the connections open and the bounds so far.

It tells the server from the path, and says which it saw: a server that
ends idle connections itself, by FIN or reset (server-close), after sending
a greeting or not; connections the server never accepted (its listen queue
overflowed) or refused at once (a connection limit); a server that sends
keepalive probes or data of its own, which keep the path from ever seeing a
longer silence. A server's own timeout hides the path beyond it: path then
reports the silence the path is known to keep, and no more.

Many servers end connections that do not log in long before they end idle
sessions: PostgreSQL after authentication_timeout (1 minute), MySQL and
MariaDB after connect_timeout (10s), sshd after LoginGraceTime (2
minutes). Given a URL instead of HOST:PORT, path logs in on every
connection and leaves each an idle session, which only the path and the
server's timeout for idle sessions (PostgreSQL's idle_session_timeout,
MySQL's wait_timeout) can end:
  postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE?PARAMS (or postgresql://),
    read as libpq and pgx read it, with PGPASSWORD, ~/.pgpass and the other
    PG* variables; keepalive keys (keepalives_idle, ...) are read and set
    aside, since path sets its own probes;
  mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE?PARAMS, PARAMS as
    go-sql-driver/mysql reads them (without TLS).
-flows is then %d unless given: a server has fewer sessions to spare than
connections. The password is never printed.

Then the Config "keepalive suggest" makes, for -detect: from the path's
idle timeout when one was measured, else from the longest silence the path
was seen to keep, labelled as safe up to it and no further.

-json prints one object instead: address, session (the server logged in
to, postgres or mysql; empty for none), survived and died (the two
bounds), lower_bound (true when survived is only the longest silence seen
kept, not a timeout), cause (drop, reset, server-close or none), end (how
the lost connections ended: unanswered, probe-reset, reset, fin or none),
spoke (the server sent data before ending them), heard (when not 0s, the
server sends keepalive probes or data of its own within that silence, so
no longer one can be measured), elapsed, flows (connections opened),
passes, retests and spurious (losses tested again, and those that were
lost packets), unaccepted, refused and resent (connections the server never
accepted, refused at once, or whose SYN was sent again), detect, and
suggest (the Config as text) or suggest_error. Durations are written as Go
writes them.

Cost: up to %d idle connections open at once to HOST:PORT for -max %v
(fewer for a shorter -max), opened one every 5ms, each a flow in every
firewall and NAT on the way and an idle connection on the server, each
sending at most -count probes, empty segments. A connection the path forgot
stays open on the server until the server's own timeout. -flows lowers that
at the same resolution, for more time: the search then takes passes, each
lasting up to the timeout or a little more. Interrupt to stop: every
connection is closed, and the status is 1.`, sessionFlows, pathFlowsDefault, 2*time.Hour),
	examples: []example{
		{"keepalive path redis.internal:6379", fmt.Sprintf("the idle timeout of the path to a Redis server, up to two hours, with\n%d connections at once; the answer comes about 2%% + 6s after the timeout", pathFlowsDefault)},
		{"keepalive path -max 10m -flows 50 -json redis.internal:6379", fmt.Sprintf("up to 10 minutes, with 50 connections open at most instead of %d: up\nto two passes, each about as long as the timeout; as JSON", pathFlows10m)},
		{"keepalive path -max 10m postgres://app@db.internal:5432/app", fmt.Sprintf("the path to PostgreSQL, measured on %d logged-in idle sessions, past\nthe minute in which the server ends connections that do not log in;\nthe password from PGPASSWORD or ~/.pgpass", sessionFlows)},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var o idletimeout.Options
		optionDurationFlag(fs, &o.Max, "max", 2*time.Hour, "10m or 2h", func(d time.Duration) idletimeout.Options { return idletimeout.Options{Max: d} },
			"the longest idle timeout to look for, a `duration` in whole seconds from 2s; a path that keeps a flow that long is reported with cause none")
		optionIntFlag(fs, &o.Flows, "flows", 0, "50", "as many as one pass needs", func(n int) idletimeout.Options { return idletimeout.Options{Flows: n} },
			fmt.Sprintf("the most connections open at once, a whole `number` from 4; 0 for as many as one pass needs (%d for -max 2h; %d for a database URL). Fewer cost time, not resolution: for -max 2h, up to about 2.3 × the timeout with 50, 6 × with 8, 36 × with 4, where one pass answers by the timeout + 2%% + 6s", pathFlowsDefault, sessionFlows))
		optionDurationFlag(fs, &o.Interval, "interval", time.Second, "1s", func(d time.Duration) idletimeout.Options { return idletimeout.Options{Interval: d} },
			"time between the probes of a connection under test (TCP_KEEPINTVL), a `duration` in whole seconds")
		optionIntFlag(fs, &o.Count, "count", 2, "2", "", func(n int) idletimeout.Options { return idletimeout.Options{Count: n} },
			"unanswered probes before a connection under test counts as lost (TCP_KEEPCNT), a whole `number`; with 1 the answer comes an interval sooner, but a single lost probe then loses a connection, which costs a test again")
		optionDurationFlag(fs, &o.DialTimeout, "timeout", 10*time.Second, "10s", func(d time.Duration) idletimeout.Options { return idletimeout.Options{DialTimeout: d} },
			"give up a connect, and a login, after this `duration`: an address that does not answer within it fails the search")
		detect := pathDetect
		fs.Var(&optionDuration{durationValue: durationValue{d: &detect, example: "30s or 2m"}, check: checkDetect}, "detect",
			"for the suggested Config: how soon a vanished peer must be noticed, a `duration`")
		asJSON := boolFlag(fs, "json", "print the result as one JSON object instead of the report")
		return func(ctx context.Context, e *env, args []string) error {
			arg, err := oneArg(args, "HOST:PORT or URL")
			if err != nil {
				return err
			}
			t, err := parseTarget(arg)
			if err != nil {
				return err
			}
			if t.dial != nil && !flagSet(fs, "flows") {
				need, _, _ := idletimeout.Plan(idletimeout.Options{Max: o.Max})
				o.Flows = min(sessionFlows, need)
			}
			o.Dial = t.dial
			return path(ctx, e, t, o, detect, *asJSON, urlSecrets(arg))
		}
	},
}

// flagSet reports whether the flag name was given on the command line.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// checkHostPort refuses an address without a host or a port, as Find
// would, but as a bad command line.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err != nil:
		return usagef("HOST:PORT %q is not host:port: %v", addr, err)
	case port == "":
		return usagef("HOST:PORT %q has no port", addr)
	case host == "":
		return usagef("HOST:PORT %q has no host", addr)
	}
	return nil
}

// checkDetect refuses a -detect no Config can meet.
func checkDetect(d time.Duration) error {
	_, err := keepalive.Suggest(time.Hour, d)
	return err
}

// path finds the idle timeout of the path to t with o and prints it, with
// the Config for detect. Nothing it prints holds one of secrets.
func path(ctx context.Context, e *env, t pathTarget, o idletimeout.Options, detect time.Duration, asJSON bool, secrets []string) error {
	flows, passes, err := idletimeout.Plan(o)
	if err != nil {
		return badConfig(err)
	}
	var last latest[idletimeout.Progress]
	o.Progress = last.set
	if e.tty {
		what := "sending keepalive probes only"
		if t.server != "" {
			what = fmt.Sprintf("logging in to %s as %q, then sending keepalive probes only", t.server, t.user)
		}
		fmt.Fprintf(e.stderr, "keepalive path: %s: up to %s open at once, %s at most; %s. Interrupt to stop.\n",
			t.addr, plural(flows, "connection"), plural(passes, "pass"), what)
	}
	start := time.Now()
	stop := e.showProgress(250*time.Millisecond, func() string {
		p := last.get()
		p.Elapsed = time.Since(start)
		return progressLine(p)
	})
	r, err := idletimeout.Find(ctx, t.addr, o)
	stop()
	if err != nil {
		return errors.New(redact(message(findError(err, r)), secrets))
	}
	c, serr := r.Suggest(detect)
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(newPathJSON(r, t, c, serr, detect))
	}
	printPath(e, r, o, t, c, serr, detect)
	return nil
}

// findError words an error of Find for the command, with what was learned
// before it.
func findError(err error, r idletimeout.Result) error {
	// The search names the field to lower; here it is a flag.
	msg := strings.Replace(message(err), "(lower Flows, now", "(lower -flows, now", 1)
	if learned := learned(r); learned != "" {
		msg += "; by then " + learned
	}
	return errors.New(msg)
}

// learned writes what a search that ended early knew of the path: "a flow
// was kept after 7s of silence, none lost"; empty when nothing.
func learned(r idletimeout.Result) string {
	died := r.Died.Truncate(time.Millisecond)
	switch {
	case r.Survived > 0 && died > 0:
		return fmt.Sprintf("a flow was kept after %v of silence and one lost after %v", r.Survived, died)
	case r.Survived > 0:
		return fmt.Sprintf("a flow was kept after %v of silence, none lost", r.Survived)
	case died > 0:
		return fmt.Sprintf("a flow was lost after %v of silence, none kept", died)
	}
	return ""
}

// progressLine is what the terminal shows while the search runs: "9s: 2
// connections open; kept 7s of silence, lost 8s".
func progressLine(p idletimeout.Progress) string {
	s := p.Elapsed.Truncate(time.Second).String()
	if p.Pass > 1 {
		s += ", pass " + strconv.Itoa(p.Pass)
	}
	s += ": " + plural(p.Open, "connection") + " open; "
	switch {
	case p.Survived > 0 && p.Died > 0:
		s += fmt.Sprintf("kept %v of silence, lost %v", p.Survived, p.Died.Truncate(time.Millisecond))
	case p.Survived > 0:
		s += fmt.Sprintf("kept %v of silence, none lost yet", p.Survived)
	case p.Died > 0:
		s += fmt.Sprintf("lost %v of silence, none kept yet", p.Died.Truncate(time.Millisecond))
	default:
		s += "nothing known yet"
	}
	return s
}

// measured reports whether r.Survived is the path's idle timeout, to the
// search's resolution, rather than only the longest silence it was seen to
// keep.
func measured(r idletimeout.Result) bool {
	return r.Cause == idletimeout.CauseDrop || r.Cause == idletimeout.CauseReset
}

// pathJSON is the object -json prints.
type pathJSON struct {
	Address    string `json:"address"`
	Session    string `json:"session"`
	Survived   string `json:"survived"`
	Died       string `json:"died"`
	LowerBound bool   `json:"lower_bound"`
	Cause      string `json:"cause"`
	End        string `json:"end"`
	Spoke      bool   `json:"spoke"`
	Heard      string `json:"heard"`
	Elapsed    string `json:"elapsed"`
	Flows      int    `json:"flows"`
	Passes     int    `json:"passes"`
	Retests    int    `json:"retests"`
	Spurious   int    `json:"spurious"`
	Unaccepted int    `json:"unaccepted"`
	Refused    int    `json:"refused"`
	Resent     int    `json:"resent"`
	Detect     string `json:"detect"`
	Suggest    string `json:"suggest,omitempty"`
	// SuggestError says why there is no Config, when there is none.
	SuggestError string `json:"suggest_error,omitempty"`
}

// sessionNames are the JSON names of the servers path logs in to.
var sessionNames = map[string]string{"": "", "PostgreSQL": "postgres", "MySQL": "mysql"}

func newPathJSON(r idletimeout.Result, t pathTarget, c keepalive.Config, serr error, detect time.Duration) pathJSON {
	j := pathJSON{
		Address:    r.Address,
		Session:    sessionNames[t.server],
		Survived:   r.Survived.String(),
		Died:       r.Died.Truncate(time.Millisecond).String(),
		LowerBound: !measured(r),
		Cause:      r.Cause.String(),
		End:        r.End.String(),
		Spoke:      r.Spoke,
		Heard:      r.Heard.String(),
		Elapsed:    r.Elapsed.Round(time.Millisecond).String(),
		Flows:      r.Flows,
		Passes:     r.Passes,
		Retests:    r.Retests,
		Spurious:   r.Spurious,
		Unaccepted: r.Unaccepted,
		Refused:    r.Refused,
		Resent:     r.Resent,
		Detect:     detect.String(),
	}
	if serr != nil {
		j.SuggestError = message(serr)
	} else {
		j.Suggest = c.String()
	}
	return j
}

// printPath prints the report: what was kept and lost, and how, what else
// was seen, what the search took, then the Config keepalive suggest makes
// for it.
func printPath(e *env, r idletimeout.Result, o idletimeout.Options, t pathTarget, c keepalive.Config, serr error, detect time.Duration) {
	w := e.stdout
	maxT := o.Max
	if maxT == 0 {
		maxT = 2 * time.Hour
	}
	died := r.Died.Truncate(time.Millisecond)
	fmt.Fprintf(w, "path to %s: %s\n", r.Address, verdict(r, t, maxT))
	if t.server != "" {
		session := fmt.Sprintf("logged in to %s as %q", t.server, t.user)
		if t.db != "" {
			session += fmt.Sprintf(", database %q", t.db)
		}
		printLine(w, "session", session+"; each connection was held as an idle session")
	}
	switch {
	case r.Cause == idletimeout.CauseServerClose:
		printLine(w, "kept", fmt.Sprintf("%v of silence, until the server ended the connections: the path's own idle timeout, if it has one, is longer, and hidden by the server's", r.Survived))
	case r.Survived > 0 && r.Cause == idletimeout.CauseNone && r.Heard == 0:
		printLine(w, "kept", fmt.Sprintf("%v of silence (-max: the longest silence tested)", r.Survived))
	case r.Survived > 0:
		printLine(w, "kept", fmt.Sprintf("%v of silence (a keepalive probe sent after it was answered)", r.Survived))
	default:
		printLine(w, "kept", "no silence of 1s or more")
	}
	switch r.Cause {
	case idletimeout.CauseDrop:
		printLine(w, "lost", fmt.Sprintf("%v of silence (drop): the keepalive probes went unanswered, on two more connections too; something on the path forgets idle flows without a word", died))
	case idletimeout.CauseReset:
		if r.End == idletimeout.EndReset {
			printLine(w, "lost", fmt.Sprintf("%v of silence (reset): something on the path reset the connections by itself, counting keepalive probes as activity, as a server does not; it resets the flows it forgets", died))
		} else {
			printLine(w, "lost", fmt.Sprintf("%v of silence (reset): a reset answered the keepalive probes, on a second connection too; something on the path rejects the flows it forgot", died))
		}
	case idletimeout.CauseServerClose:
		printLine(w, "lost", fmt.Sprintf("%v of silence (server-close, %s): %s", died, endWord(r.End), serverEnds(r, t)))
	case idletimeout.CauseNone:
		if r.Heard > 0 {
			printLine(w, "lost", "none (none), within what could be measured")
		} else {
			printLine(w, "lost", fmt.Sprintf("none (none): the path keeps idle flows %v or longer", r.Survived))
		}
	}
	if r.Heard > 0 {
		printLine(w, "note", fmt.Sprintf("the server sends keepalive probes or data of its own within %v of silence, again and again: they keep the path open, so no longer silence can be measured from here", r.Heard))
	}
	if r.Unaccepted > 0 {
		printLine(w, "note", fmt.Sprintf("%s reset at the first probe although the path kept that silence: the server had never accepted %s (its listen queue overflowed), not the path", counted(r.Unaccepted, "connection was", "connections were"), map[bool]string{true: "it", false: "them"}[r.Unaccepted == 1]))
	}
	if r.Refused > 0 {
		printLine(w, "note", fmt.Sprintf("%s ended by the server within a second of opening: it limits connections (sshd's MaxStartups, MySQL's max_connections); -flows lowers how many are open at once", counted(r.Refused, "connection was", "connections were")))
	}
	if r.Resent > 0 {
		printLine(w, "note", fmt.Sprintf("%s sent again: the server's listen queue was full, or a packet was lost; the connects slowed down", counted(r.Resent, "connection had its SYN", "connections had their SYN")))
	}
	if r.Cause == idletimeout.CauseServerClose && t.server == "" {
		printLine(w, "note", "a server's timeout for connections that do not log in hides the path; for PostgreSQL, MySQL or MariaDB, a URL that logs in (postgres://USER@HOST:PORT/DB, mysql://USER:PASSWORD@HOST:PORT/DB) measures past it")
	}
	if t.urlKeepalive != (keepalive.Config{}) {
		printLine(w, "note", fmt.Sprintf("the URL's keepalive (%v) was not used while measuring: path sets its own probes", t.urlKeepalive))
	}
	took := fmt.Sprintf("%v, %s, %s", r.Elapsed.Round(time.Millisecond), plural(r.Flows, "connection"), plural(r.Passes, "pass"))
	if r.Retests > 0 {
		took += fmt.Sprintf("; %s tested again, %d of them lost packets rather than a forgotten flow", plural(r.Retests, "loss"), r.Spurious)
	}
	printLine(w, "took", took)

	if measured(r) {
		fmt.Fprintf(w, "\nthe Config for this path, as keepalive suggest -idle-timeout %v -detect %v makes it:\n", r.Survived, detect)
	} else {
		fmt.Fprintf(w, "\na Config safe up to %v of silence and no further (%s), as keepalive suggest -idle-timeout %v -detect %v makes it:\n",
			r.Survived, boundWhy(r, maxT), r.Survived, detect)
	}
	if serr != nil {
		fmt.Fprintf(w, "none: %s\n", message(serr))
		return
	}
	suggest(e, c, r.Survived, detect, false, t.addr)
	if r.Cause == idletimeout.CauseServerClose {
		fmt.Fprintf(w, "note: no Config keeps a connection open past %v without data: the server counts only data\n", died)
	}
}

// counted writes n and the words for one or many: "1 connection was",
// "3 connections were".
func counted(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// boundWhy says why the path is known to keep idle flows only as long as
// r.Survived.
func boundWhy(r idletimeout.Result, maxT time.Duration) string {
	switch {
	case r.Cause == idletimeout.CauseServerClose:
		return "the server ends connections then, so the path's own idle timeout is unknown"
	case r.Heard > 0:
		return "the server's own probes or data keep longer silences from the path"
	}
	return fmt.Sprintf("nothing was lost within -max %v, and no longer silence was tested", maxT)
}

// verdict is the report's first line: what the idle timeout is.
func verdict(r idletimeout.Result, t pathTarget, maxT time.Duration) string {
	died := r.Died.Truncate(time.Millisecond)
	switch {
	case r.Cause == idletimeout.CauseReset && r.End == idletimeout.EndReset:
		return fmt.Sprintf("the idle timeout is %v", died)
	case r.Cause == idletimeout.CauseDrop, r.Cause == idletimeout.CauseReset:
		if r.Survived == 0 {
			return fmt.Sprintf("the idle timeout is at most %v", died)
		}
		return fmt.Sprintf("the idle timeout is more than %v, at most %v", r.Survived, died)
	case r.Cause == idletimeout.CauseServerClose:
		what := "connections"
		if t.server != "" {
			what = "idle sessions"
		}
		return fmt.Sprintf("the server ends %s after %v; the path kept them that long", what, died)
	case r.Heard > 0:
		return fmt.Sprintf("no idle timeout within %v, the longest silence measurable here", r.Heard)
	}
	return fmt.Sprintf("no idle timeout within -max %v", maxT)
}

// endWord names how the server ended the connections.
func endWord(e idletimeout.End) string {
	if e == idletimeout.EndReset {
		return "reset"
	}
	return "FIN"
}

// serverEnds says which of a server's timeouts ended the connections.
func serverEnds(r idletimeout.Result, t pathTarget) string {
	switch {
	case t.server == "PostgreSQL":
		return "the server ended idle sessions by itself: its timeout for idle sessions (PostgreSQL's idle_session_timeout)"
	case t.server == "MySQL":
		return "the server ended idle sessions by itself: its timeout for idle sessions (MySQL's wait_timeout, interactive_timeout)"
	case r.Spoke:
		return "the server sent data first (a greeting) and ended each connection that did not answer it: a login timeout (MySQL's connect_timeout, sshd's LoginGraceTime)"
	}
	return "the server ended connections on which nothing was sent, without having sent anything: a timeout for connections that do not log in or send a request (PostgreSQL's authentication_timeout, nginx's client_header_timeout), or for idle ones (Redis's timeout)"
}

// optionDuration is a duration flag that sets a field of
// idletimeout.Options, checked as it is set by the package's own rules, so
// that its error names the field and its range.
type optionDuration struct {
	durationValue
	check func(time.Duration) error
}

func optionDurationFlag(fs *flag.FlagSet, d *time.Duration, name string, def time.Duration, example string, opt func(time.Duration) idletimeout.Options, usage string) {
	*d = def
	check := func(d time.Duration) error {
		_, _, err := idletimeout.Plan(opt(d))
		return err
	}
	fs.Var(&optionDuration{durationValue: durationValue{d: d, example: example}, check: check}, name, usage)
}

func (v *optionDuration) Set(s string) error {
	d := *v.d
	if err := v.durationValue.Set(s); err != nil {
		return err
	}
	if err := v.check(*v.d); err != nil {
		*v.d = d
		return errors.New(message(err))
	}
	return nil
}

// optionInt is a whole-number flag that sets a field of
// idletimeout.Options, checked as optionDuration is.
type optionInt struct {
	n       *int
	example string // such as "50"
	zero    string // what 0 means, if it is allowed
	check   func(int) error
}

func optionIntFlag(fs *flag.FlagSet, n *int, name string, def int, example, zero string, opt func(int) idletimeout.Options, usage string) {
	*n = def
	check := func(n int) error {
		_, _, err := idletimeout.Plan(opt(n))
		return err
	}
	fs.Var(&optionInt{n: n, example: example, zero: zero, check: check}, name, usage)
	if def == 0 {
		fs.Lookup(name).DefValue = ""
	}
}

func (v *optionInt) form() string { return flagForm("a whole number", v.example, v.zero) }

func (v *optionInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n == 0 && v.zero == "" {
		return errors.New(v.form())
	}
	if err := v.check(n); err != nil {
		return errors.New(message(err))
	}
	*v.n = n
	return nil
}

func (v *optionInt) String() string {
	if v == nil || v.n == nil {
		return ""
	}
	return strconv.Itoa(*v.n)
}
