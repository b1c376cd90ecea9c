package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/keepalive-go/keepalive/ops/audit"
)

const auditUsage = `usage: keepalive audit [flags]

Lists the TCP connections on this host with the process that holds each and
the keepalive values in force on its socket, read from the socket itself
(pidfd_getfd and getsockopt; Linux 5.6 and later). Where that is not
permitted, the connection is shown with what the kernel reports, its
keepalive timer, and marked with source "kernel". Reading other users'
processes needs root or CAP_SYS_PTRACE.

With -idle-timeout, a connection is at-risk when a middlebox that forgets
flows idle that long would forget it: keepalive off, or its first probe at
or after the timeout. With -detect, it is slow-detect when a vanished peer
is noticed later than that. Each connection's verdict is one of ok, at-risk,
slow-detect, off and unknown.

The table is grouped by process; -json prints one object per connection.
With -pid, the process's network namespace is audited, also when it is not
this one (needs CAP_SYS_ADMIN).

Exit status: 0 when the audit ran, 1 when it failed, 2 for a bad command
line.
`

// filterFlags are the flags that select connections, shared by audit and
// apply.
type filterFlags struct {
	pid    int
	port   uint
	remote string
}

func addFilterFlags(fs *flag.FlagSet, pidUsage string) *filterFlags {
	f := &filterFlags{}
	fs.IntVar(&f.pid, "pid", 0, pidUsage)
	fs.UintVar(&f.port, "port", 0, "only connections whose local or remote port is this")
	fs.StringVar(&f.remote, "remote", "", "only connections whose remote address is this address or within this prefix (10.0.0.0/8)")
	return f
}

// filter returns the audit.Filter the flags give.
func (f *filterFlags) filter() (audit.Filter, error) {
	af := audit.Filter{PID: f.pid}
	if f.pid < 0 {
		return af, fmt.Errorf("-pid %d is not a process id", f.pid)
	}
	if f.port > 65535 {
		return af, fmt.Errorf("-port %d is not a port", f.port)
	}
	af.Port = uint16(f.port)
	if f.remote != "" {
		p, err := netip.ParsePrefix(f.remote)
		if err != nil {
			a, aerr := netip.ParseAddr(f.remote)
			if aerr != nil {
				return af, fmt.Errorf("-remote %q is neither an address nor a prefix", f.remote)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		af.Remote = p.Masked()
	}
	return af, nil
}

// criteriaFlags are -idle-timeout and -detect.
type criteriaFlags struct{ idleTimeout, detect time.Duration }

func addCriteriaFlags(fs *flag.FlagSet) *criteriaFlags {
	c := &criteriaFlags{}
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 0, "how long the path's firewalls, NATs or load balancers keep an idle flow (AWS NLB 350s); 0 asks nothing")
	fs.DurationVar(&c.detect, "detect", 0, "how soon a vanished peer must be noticed; 0 asks nothing")
	return c
}

func (c *criteriaFlags) criteria() (audit.Criteria, error) {
	if c.idleTimeout < 0 || c.detect < 0 {
		return audit.Criteria{}, errors.New("-idle-timeout and -detect must not be negative")
	}
	return audit.Criteria{IdleTimeout: c.idleTimeout, Detect: c.detect}, nil
}

func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keepalive audit", auditUsage)
	ff := addFilterFlags(cmd.fs, "only connections that this process holds, in its network namespace")
	cf := addCriteriaFlags(cmd.fs)
	asJSON := cmd.fs.Bool("json", false, "print one JSON object per connection instead of the table")
	kernelOnly := cmd.fs.Bool("kernel-only", false, "do not read values from sockets: show only what the kernel reports, as ss does")
	pos, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return cmd.usageError(stderr, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	f, err := ff.filter()
	if err != nil {
		return cmd.usageError(stderr, err.Error())
	}
	cr, err := cf.criteria()
	if err != nil {
		return cmd.usageError(stderr, err.Error())
	}
	o := audit.Options{Criteria: cr, Filter: f, KernelOnly: *kernelOnly}
	progress := newProgress(stderr)
	o.Progress = progress.draw
	rep, err := audit.Audit(ctx, o)
	progress.clear()
	if err != nil {
		fmt.Fprintf(stderr, "keepalive: %v\n", err)
		return exitFail
	}
	// One write per line would be 100,000 system calls on a busy host.
	bw := bufio.NewWriterSize(stdout, 64<<10)
	if *asJSON {
		enc := json.NewEncoder(bw)
		for _, c := range rep.Conns {
			if err := enc.Encode(c); err != nil {
				fmt.Fprintf(stderr, "keepalive: %v\n", err)
				return exitFail
			}
		}
	} else {
		printAudit(bw, rep, cr, *kernelOnly)
	}
	if err := bw.Flush(); err != nil {
		fmt.Fprintf(stderr, "keepalive: %v\n", err)
		return exitFail
	}
	return exitOK
}

// printAudit writes the report as a table per process, then a summary.
func printAudit(w io.Writer, rep *audit.Report, cr audit.Criteria, kernelOnly bool) {
	var permErr *audit.PermissionError
	unread := 0
	counts := map[audit.Verdict]int{}
	for start := 0; start < len(rep.Conns); {
		end := start + 1
		for end < len(rep.Conns) && rep.Conns[end].PID == rep.Conns[start].PID {
			end++
		}
		group := rep.Conns[start:end]
		if group[0].PID != 0 {
			fmt.Fprintf(w, "%s (pid %d): %s\n", group[0].Command, group[0].PID, plural(len(group), "connection"))
		} else {
			fmt.Fprintf(w, "no process found (not permitted to look, or closed): %s\n", plural(len(group), "connection"))
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  FD\tLOCAL\tREMOTE\tSTATE\tKEEPALIVE\tIDLE\tINTERVAL\tCOUNT\tUSER TIMEOUT\tDETECTS IN\tSOURCE\tVERDICT\t")
		for _, c := range group {
			counts[c.Verdict]++
			if c.Err != nil {
				unread++
				if permErr == nil {
					errors.As(c.Err, &permErr)
				}
			}
			fd := "-"
			if c.PID != 0 {
				fd = strconv.Itoa(c.FD)
			}
			fmt.Fprintf(tw, "  %s\t%v\t%v\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%v\t\n",
				fd, c.Local, c.Remote, c.State, keepaliveCell(c), valueCell(c, c.Config.Idle), valueCell(c, c.Config.Interval),
				countCell(c), userTimeoutCell(c), detectCell(c), c.Source, c.Verdict)
		}
		tw.Flush()
		fmt.Fprintln(w)
		start = end
	}
	var parts []string
	for _, v := range []audit.Verdict{audit.OK, audit.AtRisk, audit.SlowDetect, audit.Off, audit.Unknown} {
		if counts[v] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[v], v))
		}
	}
	fmt.Fprintf(w, "%s", plural(len(rep.Conns), "connection"))
	if len(parts) > 0 {
		fmt.Fprintf(w, ": %s", strings.Join(parts, ", "))
	}
	fmt.Fprintln(w)
	switch {
	case cr.IdleTimeout > 0 && cr.Detect > 0:
		fmt.Fprintf(w, "checked against an idle timeout of %v and detection within %v\n", fmtDuration(cr.IdleTimeout), fmtDuration(cr.Detect))
	case cr.IdleTimeout > 0:
		fmt.Fprintf(w, "checked against an idle timeout of %v\n", fmtDuration(cr.IdleTimeout))
	case cr.Detect > 0:
		fmt.Fprintf(w, "checked against detection within %v\n", fmtDuration(cr.Detect))
	default:
		fmt.Fprintln(w, "no -idle-timeout or -detect given: the verdicts say only whether keepalive is on")
	}
	if kernelOnly {
		fmt.Fprintln(w, "-kernel-only: values were not read from the sockets")
	}
	if rep.Unreadable > 0 {
		fmt.Fprintf(w, "%s could not be searched for lack of permission: their connections show no process (run as root, or with CAP_SYS_PTRACE)\n", plural(rep.Unreadable, "process"))
	}
	if unread > 0 {
		fmt.Fprintf(w, "the values of %s could not be read from the socket", plural(unread, "connection"))
		if permErr != nil {
			fmt.Fprintf(w, ": %s", permErr.Why)
		}
		fmt.Fprintln(w)
	}
}

// keepaliveCell is "on", "off", or "?" when not known; with the kernel's
// view only, the keepalive timer's next firing.
func keepaliveCell(c audit.Conn) string {
	switch {
	case c.Source == audit.SourceNone:
		return "?"
	case !c.Enabled:
		return "off"
	case c.Source == audit.SourceKernel && c.Timer.Kind == audit.TimerKeepalive:
		return fmt.Sprintf("on (timer %s)", fmtDuration(c.Timer.Expires.Round(time.Second)))
	}
	return "on"
}

// valueCell is a value read from the socket, or "-" when none was.
func valueCell(c audit.Conn, d time.Duration) string {
	if c.Source != audit.SourceSocket {
		return "-"
	}
	return fmtDuration(d)
}

func countCell(c audit.Conn) string {
	if c.Source != audit.SourceSocket {
		return "-"
	}
	return strconv.Itoa(c.Config.Count)
}

func userTimeoutCell(c audit.Conn) string {
	switch {
	case c.Source != audit.SourceSocket:
		return "-"
	case c.Config.UserTimeout == 0:
		return "none"
	}
	return fmtDuration(c.Config.UserTimeout)
}

func detectCell(c audit.Conn) string {
	switch {
	case c.Source == audit.SourceNone:
		return "-"
	case !c.Enabled:
		return "never"
	case c.Source != audit.SourceSocket:
		return "-"
	}
	return fmtDuration(c.DetectionTime)
}

// fmtDuration writes d in Go's notation without zero units: 2h, 1m15s.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// plural writes "1 connection", "2 connections"; "process" becomes
// "processes".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if strings.HasSuffix(noun, "s") {
		return fmt.Sprintf("%d %ses", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// progressDelay is how long an audit runs before progress is drawn.
const progressDelay = time.Second

// progress draws an audit's progress on a terminal, once it has taken
// longer than progressDelay; on anything else it draws nothing.
type progress struct {
	w     io.Writer // nil: not a terminal
	start time.Time
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{start: time.Now()}
	if isTerminal(w) {
		p.w = w
	}
	return p
}

func (p *progress) draw(pr audit.Progress) {
	now := time.Now()
	if p.w == nil || now.Sub(p.start) < progressDelay || now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last, p.drawn = now, true
	if pr.Total > 0 {
		fmt.Fprintf(p.w, "\r\033[Kaudit: %s: %d of %d", pr.Stage, pr.Done, pr.Total)
	} else {
		fmt.Fprintf(p.w, "\r\033[Kaudit: %s: %d", pr.Stage, pr.Done)
	}
}

// clear removes what draw drew.
func (p *progress) clear() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// isTerminal reports whether w is a terminal, on which progress may be
// drawn.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
