package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/metrics"
)

var auditCommand = &command{
	name:    "audit",
	args:    "[flags]",
	summary: "list TCP connections with their keepalive",
	help: `Lists the TCP connections on this host with the process that holds each and
the keepalive values in force on its socket, read from the socket itself
(pidfd_getfd and getsockopt; Linux 5.6 and later). Where that is not
permitted, a connection is shown with what the kernel reports, its
keepalive timer, and source "kernel". Reading other users' processes needs
root or CAP_SYS_PTRACE.

` + criteriaHelp + `

The table is grouped by process; -json prints one object per connection
instead, with pid, command, local, remote, state, source, enabled, idle,
interval, count, user_timeout and detection_time (durations as Go writes
them), the timer, the verdicts and the error, if any. -pid audits the
network namespace of that process, also when it is not this one (which
needs CAP_SYS_ADMIN). On a terminal, progress is drawn while an audit is
slow.

-prom FILE writes the metrics "keepalive exporter" serves to FILE instead,
for node_exporter's textfile collector, replacing it atomically; an audit
that fails leaves FILE as it was.`,
	examples: []example{
		{"keepalive audit -idle-timeout 350s -detect 2m", "every connection on the host, against AWS NLB's idle timeout and a dead\npeer noticed within 2 minutes"},
		{"keepalive audit -json -pid 1234 -port 5432", "the connections of process 1234 to or from port 5432, as JSON"},
		{"keepalive audit -idle-timeout 350s -prom /var/lib/node_exporter/keepalive.prom", "write the metrics for node_exporter's textfile collector, as from cron\nor a systemd timer"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		ff := addFilterFlags(fs, "only connections that process `pid` holds, in its network namespace")
		cf := addCriteriaFlags(fs)
		asJSON := boolFlag(fs, "json", "print one JSON object per connection instead of the table")
		kernelOnly := boolFlag(fs, "kernel-only", "do not read values from the sockets: show only what the kernel reports, as ss does")
		prom := fileFlag(fs, "prom", "write the metrics to this `file` for node_exporter's textfile collector instead of printing")
		perConn := boolFlag(fs, "per-connection", "with -prom: also one series per connection and value (see keepalive exporter -h)")
		return func(ctx context.Context, e *env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			switch {
			case *prom != "" && *asJSON:
				return usagef("-json and -prom: choose one")
			case *perConn && *prom == "":
				return usagef("-per-connection is for -prom")
			}
			o := audit.Options{Criteria: cf.criteria(), Filter: ff.filter(), KernelOnly: *kernelOnly}
			start := time.Now()
			rep, err := runAudit(ctx, e, o)
			if err != nil {
				return err
			}
			if *prom != "" {
				return metrics.WriteTextfile(*prom, rep, time.Since(start), *perConn)
			}
			// One write per line would be 100,000 system calls on a busy host.
			bw := bufio.NewWriterSize(e.stdout, 64<<10)
			if *asJSON {
				enc := json.NewEncoder(bw)
				for _, c := range rep.Conns {
					if err := enc.Encode(c); err != nil {
						return err
					}
				}
			} else {
				printAudit(bw, rep, o)
			}
			return bw.Flush()
		}
	},
}

// progressDelay is how long an audit runs before its progress is drawn.
const progressDelay = 500 * time.Millisecond

// runAudit runs audit.Audit with o, drawing its progress on a terminal
// once it is slow.
func runAudit(ctx context.Context, e *env, o audit.Options) (*audit.Report, error) {
	var last latest[audit.Progress]
	o.Progress = last.set
	stop := e.showProgressAfter(progressDelay, 100*time.Millisecond, func() string {
		p := last.get()
		if p.Total > 0 {
			return fmt.Sprintf("audit: %s: %d of %d", p.Stage, p.Done, p.Total)
		}
		return fmt.Sprintf("audit: %s: %d", p.Stage, p.Done)
	})
	rep, err := audit.Audit(ctx, o)
	stop()
	if err != nil {
		return nil, noProcess(err, o.Filter.PID)
	}
	return rep, nil
}

// noProcess words the error of a -pid that names no process.
func noProcess(err error, pid int) error {
	var perr *audit.PermissionError
	if pid != 0 && errors.Is(err, os.ErrNotExist) && !errors.As(err, &perr) {
		return fmt.Errorf("no process %d", pid)
	}
	return err
}

// printAudit writes the report as a table per process, then a summary.
func printAudit(w io.Writer, rep *audit.Report, o audit.Options) {
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
	fmt.Fprintln(w, checked(o.Criteria))
	if o.KernelOnly {
		fmt.Fprintln(w, "-kernel-only: values were not read from the sockets")
	}
	if len(rep.Unreadable) > 0 {
		fmt.Fprintf(w, "%s could not be searched for lack of permission, and may hold the connections that show no process:\n", plural(len(rep.Unreadable), "process"))
		fmt.Fprint(w, wrap(unsearched(rep.Unreadable), "  "))
		fmt.Fprint(w, wrap("why: "+rep.Unreadable[0].Why, "  "))
	}
	if unread > 0 {
		fmt.Fprintf(w, "the values of %s could not be read from the socket", plural(unread, "connection"))
		if permErr != nil {
			fmt.Fprintf(w, ": %s", permErr.Why)
		}
		fmt.Fprintln(w)
	}
}

// unsearched names the processes that could not be searched, by command
// in the order of their pids: "sshd (pid 812), postgres (40 processes:
// pids 1200, 1201, 1202 and 37 more)".
func unsearched(procs []*audit.PermissionError) string {
	const shown = 3 // pids named per command
	var order []string
	byCommand := map[string][]int{}
	for _, p := range procs {
		if _, ok := byCommand[p.Command]; !ok {
			order = append(order, p.Command)
		}
		byCommand[p.Command] = append(byCommand[p.Command], p.PID)
	}
	parts := make([]string, 0, len(order))
	for _, command := range order {
		pids := byCommand[command]
		if command == "" {
			command = "(ended)"
		}
		if len(pids) == 1 {
			parts = append(parts, fmt.Sprintf("%s (pid %d)", command, pids[0]))
			continue
		}
		var list []string
		for _, pid := range pids[:min(len(pids), shown)] {
			list = append(list, strconv.Itoa(pid))
		}
		last := fmt.Sprintf("%d more", len(pids)-shown)
		if len(pids) <= shown {
			last, list = list[len(list)-1], list[:len(list)-1]
		}
		parts = append(parts, fmt.Sprintf("%s (%d processes: pids %s and %s)", command, len(pids), strings.Join(list, ", "), last))
	}
	return strings.Join(parts, ", ")
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
		return fmt.Sprintf("on (timer %v)", c.Timer.Expires.Round(time.Second))
	}
	return "on"
}

// valueCell is a value read from the socket, or "-" when none was.
func valueCell(c audit.Conn, d time.Duration) string {
	if c.Source != audit.SourceSocket {
		return "-"
	}
	return d.String()
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
	return c.Config.UserTimeout.String()
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
	return c.DetectionTime.String()
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
