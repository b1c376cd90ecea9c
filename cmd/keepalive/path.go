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
	args:    "[flags] HOST:PORT",
	summary: "find the idle timeout of a path",
	help: fmt.Sprintf(`Finds the idle timeout of the path to HOST:PORT: after how long of silence
a firewall, NAT or load balancer on the way forgets a connection, or the
server closes it. It sends keepalive probes and nothing else, not a byte of
data, so any TCP server will do and nothing is needed on the other end.
Linux only.

It opens connections that stay silent and tests each after a different
silence, up to -max. It reports the longest silence a connection was kept
and the shortest that lost one, at most max(1s, 2%%) apart, and how it was
lost: its probes went unanswered (drop), a reset came back (reset), or the
server closed it itself (server-close); none when nothing was lost within
-max. The answer comes as soon as it is known: for a timeout T, about T +
max(1s, 2%%) + 2 × -count × -interval + 0.5s after the start, and after
-max only when nothing is lost. Then the Config "keepalive suggest" makes
from the longest silence kept, for -detect. On a terminal, progress is
drawn on stderr: the time, the connections open and the bounds so far.

-json prints one object instead: address, survived and died (the two
bounds), cause (drop, reset, server-close or none), heard (when not 0s, the
server sends keepalive probes of its own within that silence, so no longer
one can be measured), elapsed, flows (connections opened), passes, retests
and spurious (losses tested again, and those that were lost packets),
detect, and suggest (the Config as text) or suggest_error. Durations are
written as Go writes them.

Cost: up to %d idle connections open at once to HOST:PORT for -max %v
(fewer for a shorter -max), each a flow in every firewall and NAT on the
way and an idle connection on the server, each sending at most -count
probes, empty segments. A connection the path forgot stays open on the
server until the server's own timeout. -flows lowers that at the same
resolution, for more time: the search then takes passes, each lasting up to
the timeout or a little more. Interrupt to stop: every connection is
closed, and the status is 1.`, pathFlowsDefault, 2*time.Hour),
	examples: []example{
		{"keepalive path db.internal:5432", fmt.Sprintf("the idle timeout of the path to a PostgreSQL server, up to two hours, with\n%d connections at once; the answer comes about 2%% + 5s after the timeout", pathFlowsDefault)},
		{"keepalive path -max 10m -flows 50 -json db.internal:5432", fmt.Sprintf("up to 10 minutes, with 50 connections open at most instead of %d: up\nto two passes, each about as long as the timeout; as JSON", pathFlows10m)},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		var o idletimeout.Options
		optionDurationFlag(fs, &o.Max, "max", 2*time.Hour, "10m or 2h", func(d time.Duration) idletimeout.Options { return idletimeout.Options{Max: d} },
			"the longest idle timeout to look for, a `duration` in whole seconds from 2s; a path that keeps a flow that long is reported with cause none")
		optionIntFlag(fs, &o.Flows, "flows", 0, "50", "as many as one pass needs", func(n int) idletimeout.Options { return idletimeout.Options{Flows: n} },
			fmt.Sprintf("the most connections open at once, a whole `number` from 4; 0 for as many as one pass needs (%d for -max 2h). Fewer cost time, not resolution: for -max 2h, up to about 2.3 × the timeout with 50, 6 × with 8, 36 × with 4, where one pass answers by the timeout + 2%% + 5s", pathFlowsDefault))
		optionDurationFlag(fs, &o.Interval, "interval", time.Second, "1s", func(d time.Duration) idletimeout.Options { return idletimeout.Options{Interval: d} },
			"time between the probes of a connection under test (TCP_KEEPINTVL), a `duration` in whole seconds")
		optionIntFlag(fs, &o.Count, "count", 2, "2", "", func(n int) idletimeout.Options { return idletimeout.Options{Count: n} },
			"unanswered probes before a connection under test counts as lost (TCP_KEEPCNT), a whole `number`; with 1 the answer comes an interval sooner, but a single lost probe then loses a connection, which costs a test again")
		optionDurationFlag(fs, &o.DialTimeout, "timeout", 10*time.Second, "10s", func(d time.Duration) idletimeout.Options { return idletimeout.Options{DialTimeout: d} },
			"give up a connect after this `duration`: an address that does not answer within it fails the search")
		detect := pathDetect
		fs.Var(&optionDuration{durationValue: durationValue{d: &detect, example: "30s or 2m"}, check: checkDetect}, "detect",
			"for the suggested Config: how soon a vanished peer must be noticed, a `duration`")
		asJSON := boolFlag(fs, "json", "print the result as one JSON object instead of the report")
		return func(ctx context.Context, e *env, args []string) error {
			addr, err := oneArg(args, "HOST:PORT")
			if err != nil {
				return err
			}
			if err := checkHostPort(addr); err != nil {
				return err
			}
			return path(ctx, e, addr, o, detect, *asJSON)
		}
	},
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

// path finds the idle timeout of the path to addr with o and prints it,
// with the Config for detect.
func path(ctx context.Context, e *env, addr string, o idletimeout.Options, detect time.Duration, asJSON bool) error {
	flows, passes, err := idletimeout.Plan(o)
	if err != nil {
		return badConfig(err)
	}
	var last latest[idletimeout.Progress]
	o.Progress = last.set
	if e.tty {
		fmt.Fprintf(e.stderr, "keepalive path: %s: up to %s open at once, %s at most; sending keepalive probes only. Interrupt to stop.\n",
			addr, plural(flows, "connection"), plural(passes, "pass"))
	}
	start := time.Now()
	stop := e.showProgress(250*time.Millisecond, func() string {
		p := last.get()
		p.Elapsed = time.Since(start)
		return progressLine(p)
	})
	r, err := idletimeout.Find(ctx, addr, o)
	stop()
	if err != nil {
		return findError(err, r)
	}
	c, serr := r.Suggest(detect)
	if asJSON {
		return json.NewEncoder(e.stdout).Encode(newPathJSON(r, c, serr, detect))
	}
	printPath(e, r, o, c, serr, detect)
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
	died := r.Died.Round(time.Millisecond)
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
		s += fmt.Sprintf("kept %v of silence, lost %v", p.Survived, p.Died.Round(time.Millisecond))
	case p.Survived > 0:
		s += fmt.Sprintf("kept %v of silence, none lost yet", p.Survived)
	case p.Died > 0:
		s += fmt.Sprintf("lost %v of silence, none kept yet", p.Died.Round(time.Millisecond))
	default:
		s += "nothing known yet"
	}
	return s
}

// pathJSON is the object -json prints.
type pathJSON struct {
	Address  string `json:"address"`
	Survived string `json:"survived"`
	Died     string `json:"died"`
	Cause    string `json:"cause"`
	Heard    string `json:"heard"`
	Elapsed  string `json:"elapsed"`
	Flows    int    `json:"flows"`
	Passes   int    `json:"passes"`
	Retests  int    `json:"retests"`
	Spurious int    `json:"spurious"`
	Detect   string `json:"detect"`
	Suggest  string `json:"suggest,omitempty"`
	// SuggestError says why there is no Config, when there is none.
	SuggestError string `json:"suggest_error,omitempty"`
}

func newPathJSON(r idletimeout.Result, c keepalive.Config, serr error, detect time.Duration) pathJSON {
	j := pathJSON{
		Address:  r.Address,
		Survived: r.Survived.String(),
		Died:     r.Died.Round(time.Millisecond).String(),
		Cause:    r.Cause.String(),
		Heard:    r.Heard.String(),
		Elapsed:  r.Elapsed.Round(time.Millisecond).String(),
		Flows:    r.Flows,
		Passes:   r.Passes,
		Retests:  r.Retests,
		Spurious: r.Spurious,
		Detect:   detect.String(),
	}
	if serr != nil {
		j.SuggestError = message(serr)
	} else {
		j.Suggest = c.String()
	}
	return j
}

// printPath prints the report: what was kept and lost, and how, what the
// search took, then the Config keepalive suggest makes for it.
func printPath(e *env, r idletimeout.Result, o idletimeout.Options, c keepalive.Config, serr error, detect time.Duration) {
	w := e.stdout
	maxT := o.Max
	if maxT == 0 {
		maxT = 2 * time.Hour
	}
	died := r.Died.Round(time.Millisecond)
	fmt.Fprintf(w, "path to %s: %s\n", r.Address, verdict(r, maxT))
	if r.Survived > 0 {
		how := "a keepalive probe sent after it was answered"
		if r.Cause == idletimeout.CauseNone && r.Heard == 0 {
			how = "-max: the longest silence tested"
		}
		printLine(w, "kept", fmt.Sprintf("%v of silence (%s)", r.Survived, how))
	} else {
		printLine(w, "kept", "no silence of 1s or more")
	}
	switch r.Cause {
	case idletimeout.CauseDrop:
		printLine(w, "lost", fmt.Sprintf("%v of silence (drop): the keepalive probes went unanswered; something on the path forgets idle flows without a word", died))
	case idletimeout.CauseReset:
		printLine(w, "lost", fmt.Sprintf("%v of silence (reset): a reset came back; something on the path, or the server, rejects the flows it forgot", died))
	case idletimeout.CauseServerClose:
		printLine(w, "lost", fmt.Sprintf("%v of silence (server-close): the server closed the connection itself; keepalive probes do not count for it, only data does", died))
	case idletimeout.CauseNone:
		if r.Heard > 0 {
			printLine(w, "lost", "none (none), within what could be measured")
		} else {
			printLine(w, "lost", fmt.Sprintf("none (none): the path keeps idle flows %v or longer", r.Survived))
		}
	}
	if r.Heard > 0 {
		printLine(w, "note", fmt.Sprintf("the server sends keepalive probes of its own within %v of silence: they keep the path open, so no longer silence can be measured from here", r.Heard))
	}
	took := fmt.Sprintf("%v, %s, %s", r.Elapsed.Round(time.Millisecond), plural(r.Flows, "connection"), plural(r.Passes, "pass"))
	if r.Retests > 0 {
		took += fmt.Sprintf("; %s tested again, %d of them lost packets rather than a forgotten flow", plural(r.Retests, "loss"), r.Spurious)
	}
	printLine(w, "took", took)

	fmt.Fprintf(w, "\nthe Config for this path, as keepalive suggest -idle-timeout %v -detect %v makes it:\n", r.Survived, detect)
	if serr != nil {
		fmt.Fprintf(w, "none: %s\n", message(serr))
		return
	}
	suggest(e, c, r.Survived, detect, false, r.Address)
	if r.Cause == idletimeout.CauseServerClose {
		fmt.Fprintf(w, "note: no Config keeps a connection open past %v without data: the server counts only data\n", died)
	}
}

// verdict is the report's first line: what the idle timeout is.
func verdict(r idletimeout.Result, maxT time.Duration) string {
	died := r.Died.Round(time.Millisecond)
	switch r.Cause {
	case idletimeout.CauseDrop, idletimeout.CauseReset:
		if r.Survived == 0 {
			return fmt.Sprintf("the idle timeout is at most %v", died)
		}
		return fmt.Sprintf("the idle timeout is more than %v, at most %v", r.Survived, died)
	case idletimeout.CauseServerClose:
		return fmt.Sprintf("the server closes idle connections after %v", died)
	}
	if r.Heard > 0 {
		return fmt.Sprintf("no idle timeout within %v, the longest silence measurable here", r.Heard)
	}
	return fmt.Sprintf("no idle timeout within -max %v", maxT)
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
