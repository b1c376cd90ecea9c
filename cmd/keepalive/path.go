package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/idletimeout"
)

const pathUsage = `usage: keepalive path [flags] HOST:PORT

Finds the idle timeout of the path to HOST:PORT: after how long of silence
a firewall, NAT or load balancer on the way forgets a connection, or the
server closes it. It sends keepalive probes and nothing else, not a byte of
data, so any TCP server will do. Linux only.

It opens connections that stay silent and tests each after a different
silence, up to -max. The answer is the longest silence a connection was
kept and the shortest that lost one, at most max(1s, 2%%) apart, and how it
was lost: its probes went unanswered (drop), a reset came back (reset), or
the server closed it itself (server-close). It comes once known: for a
timeout T, by about T + 2%% + 5s; after -max when nothing is lost. Then the
Config that keepalive suggest would make for the path, for -detect.

Cost: up to %d idle connections at once to HOST:PORT for -max %v, each
sending at most -count probes. -flows lowers that; the search then takes
passes, each lasting up to the timeout or a little more (-flows 50: two
passes, about 2.3 × the timeout). Interrupt to stop: every connection is
closed.

Exit status: 0 when the search ended, whatever it found; 1 when it failed
or was interrupted (the address refused or did not answer, the server
refused the extra connections); 2 for a bad command line.
`

// pathFlags maps the fields of idletimeout.Options to the flags that set
// them, for the errors.
var pathFlags = map[string]string{
	"Max":         "-max",
	"Flows":       "-flows",
	"Interval":    "-interval",
	"Count":       "-count",
	"DialTimeout": "-timeout",
}

// defaultDetect is the -detect of path: as the sample Config, a dead peer
// noticed within two minutes.
const defaultDetect = 2 * time.Minute

func pathCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	flows, _, _ := idletimeout.Plan(idletimeout.Options{})
	cmd := newCommand("keepalive path", fmt.Sprintf(pathUsage, flows, 2*time.Hour))
	var o idletimeout.Options
	cmd.fs.DurationVar(&o.Max, "max", 2*time.Hour, "the longest timeout to look for, in whole seconds from 2s")
	cmd.fs.IntVar(&o.Flows, "flows", 0, "the most connections open at once; 0 for as many as one pass needs")
	cmd.fs.DurationVar(&o.Interval, "interval", time.Second, "time between the probes of a connection under test")
	cmd.fs.IntVar(&o.Count, "count", 2, "unanswered probes before a connection under test counts as lost")
	cmd.fs.DurationVar(&o.DialTimeout, "timeout", 10*time.Second, "give up a connect after this long")
	detect := cmd.fs.Duration("detect", defaultDetect, "for the suggested Config: how soon a vanished peer must be noticed")
	asJSON := cmd.fs.Bool("json", false, "print the result as one JSON object")
	pos, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	switch {
	case len(pos) == 0:
		return cmd.usageError(stderr, "missing HOST:PORT")
	case len(pos) > 1:
		return cmd.usageError(stderr, fmt.Sprintf("unexpected argument %q after HOST:PORT", pos[1]))
	}
	addr := pos[0]
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
		return cmd.usageError(stderr, fmt.Sprintf("HOST:PORT %q has no port", addr))
	}
	// Zero means the default in Options; on the command line it is a
	// mistake.
	for _, f := range []struct {
		name string
		bad  bool
		v    any
	}{
		{"-max", o.Max <= 0, o.Max},
		{"-interval", o.Interval <= 0, o.Interval},
		{"-count", o.Count <= 0, o.Count},
		{"-timeout", o.DialTimeout <= 0, o.DialTimeout},
	} {
		if f.bad {
			return cmd.usageError(stderr, fmt.Sprintf("%s %v must be positive", f.name, f.v))
		}
	}
	n, passes, err := idletimeout.Plan(o)
	if err != nil {
		var oe *idletimeout.OptionError
		if errors.As(err, &oe) {
			return cmd.usageError(stderr, fmt.Sprintf("%s %v %s", pathFlags[oe.Field], oe.Value, oe.Reason))
		}
		return cmd.usageError(stderr, err.Error())
	}
	if _, err := keepalive.Suggest(time.Hour, *detect); err != nil {
		return cmd.usageError(stderr, "-detect: "+err.Error())
	}

	var progress *progressLine
	if isTerminal(stderr) {
		progress = &progressLine{w: stderr}
		o.Progress = progress.draw
		fmt.Fprintf(stderr, "keepalive path %s: up to %d connections at once, %s; sending keepalive probes only. Interrupt to stop.\n",
			addr, n, plural(passes, "pass", "passes at most"))
	}
	r, err := idletimeout.Find(ctx, addr, o)
	progress.clear()
	if err != nil {
		fmt.Fprintln(stderr, err)
		if r.Survived > 0 || r.Died > 0 {
			fmt.Fprintf(stderr, "learned before the end: kept after %s of silence, lost after %s\n", secsOrNone(r.Survived), secsOrNone(r.Died))
		}
		return exitFail
	}
	c, serr := r.Suggest(*detect)
	if *asJSON {
		if err := printPathJSON(stdout, r, c, serr, *detect); err != nil {
			fmt.Fprintln(stderr, err)
			return exitFail
		}
		return exitOK
	}
	printPath(stdout, r, o.Max, c, serr, *detect)
	return exitOK
}

// pathJSON is the -json output: durations in Go's notation.
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
	Suggest  string `json:"suggest"`
	// SuggestError says why there is no suggestion, when there is none.
	SuggestError string `json:"suggest_error,omitempty"`
}

func printPathJSON(w io.Writer, r idletimeout.Result, c keepalive.Config, serr error, detect time.Duration) error {
	j := pathJSON{
		Address:  r.Address,
		Survived: r.Survived.String(),
		Died:     r.Died.String(),
		Cause:    r.Cause.String(),
		Heard:    r.Heard.String(),
		Elapsed:  r.Elapsed.Round(time.Millisecond).String(),
		Flows:    r.Flows,
		Passes:   r.Passes,
		Retests:  r.Retests,
		Spurious: r.Spurious,
		Detect:   detect.String(),
		Suggest:  c.String(),
	}
	if serr != nil {
		j.SuggestError = serr.Error()
	}
	enc := json.NewEncoder(w)
	return enc.Encode(j)
}

func printPath(w io.Writer, r idletimeout.Result, maxT time.Duration, c keepalive.Config, serr error, detect time.Duration) {
	fmt.Fprintf(w, "path to %s\n", r.Address)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if r.Survived > 0 {
		fmt.Fprintf(tw, "  kept:\t%s of silence: a keepalive probe after it was answered\n", secs(r.Survived))
	} else {
		fmt.Fprintf(tw, "  kept:\tno silence of 1s or more\n")
	}
	switch r.Cause {
	case idletimeout.CauseDrop:
		fmt.Fprintf(tw, "  lost:\t%s of silence: the probes went unanswered (drop): something on the path forgets idle flows without a word\n", secs(r.Died))
	case idletimeout.CauseReset:
		fmt.Fprintf(tw, "  lost:\t%s of silence: a reset came back (reset): something on the path, or the server, rejects the flows it forgot\n", secs(r.Died))
	case idletimeout.CauseServerClose:
		fmt.Fprintf(tw, "  lost:\t%s of silence: the server closed the connection itself (server-close); keepalive probes do not count for it, only data does\n", secs(r.Died))
	case idletimeout.CauseNone:
		if r.Heard == 0 {
			fmt.Fprintf(tw, "  lost:\tnone in %s of silence (none): the path keeps idle flows at least that long\n", secs(maxT))
		} else {
			fmt.Fprintf(tw, "  lost:\tnone (none)\n")
		}
	}
	if r.Heard > 0 {
		fmt.Fprintf(tw, "  note:\tthe server sends keepalive probes of its own within %s of silence: they keep the path open, so no longer silence can be measured from here\n", secs(r.Heard))
	}
	switch r.Cause {
	case idletimeout.CauseDrop, idletimeout.CauseReset:
		if r.Survived > 0 {
			fmt.Fprintf(tw, "  timeout:\tmore than %s, at most %s\n", secs(r.Survived), secs(r.Died))
		} else {
			fmt.Fprintf(tw, "  timeout:\tat most %s\n", secs(r.Died))
		}
	}
	extra := ""
	if r.Retests > 0 {
		extra = fmt.Sprintf(", %s re-tested (%d of them lost packets, not flows)", plural(r.Retests, "loss", "losses"), r.Spurious)
	}
	fmt.Fprintf(tw, "  took:\t%v, %d connections, %s%s\n", r.Elapsed.Round(100*time.Millisecond), r.Flows, plural(r.Passes, "pass", "passes"), extra)
	tw.Flush()

	fmt.Fprintf(w, "\nkeepalive suggest -idle-timeout %s -detect %s:\n", secs(r.Survived), secs(detect))
	if serr != nil {
		fmt.Fprintf(w, "  no Config: %v\n", serr)
		return
	}
	fmt.Fprintf(w, "  %s\n", c)
}

// secsOrNone writes d as secs does, to the millisecond, and zero as "-".
func secsOrNone(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return secs(d.Round(time.Millisecond))
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// progressLine draws the search's progress on one line of a terminal.
type progressLine struct {
	w     io.Writer
	drawn bool
}

func (p *progressLine) draw(s idletimeout.Progress) {
	fmt.Fprint(p.w, "\r\033[K"+progressText(s))
	p.drawn = true
}

// clear erases the line, if one was drawn; a nil progressLine does
// nothing.
func (p *progressLine) clear() {
	if p != nil && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// progressText is the progress line: elapsed time, pass, connections
// open, and the bounds so far.
func progressText(s idletimeout.Progress) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v", s.Elapsed.Truncate(time.Second))
	if s.Pass > 1 {
		fmt.Fprintf(&b, "  pass %d", s.Pass)
	}
	fmt.Fprintf(&b, "  %d open  kept %s  lost %s", s.Open, secsOrNone(s.Survived), secsOrNone(s.Died))
	return b.String()
}

// isTerminal reports whether w is a terminal, to draw progress on. It
// checks for a character device; it becomes golang.org/x/term's
// IsTerminal when the command has a module of its own.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
