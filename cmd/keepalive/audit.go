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
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/metrics"
)

var auditCommand = &command{
	name:    "audit",
	args:    "[flags]",
	summary: "list TCP connections with their keepalive",
	help: `Lists the TCP connections on this host, in every network namespace its
processes are in, with the process that holds each and the keepalive values
in force on its socket, read from the socket itself: by a BPF TCP iterator,
which ptraces nothing and so reads the processes of other users and of
containers exactly (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; Linux 6.1
and later), or, where that cannot run, on a duplicate made with pidfd_getfd
(ptrace access; Linux 5.6 and later). -method chooses; the output says
which was used, and why the iterator could not run. Where neither is
permitted, a connection is shown with what the kernel reports, its
keepalive timer, and source "kernel". Finding a socket's process reads
/proc/PID/fd, which other users' processes need root or CAP_SYS_PTRACE
for: without, their connections are shown with no process.

A connection whose peer has not answered its keepalive probes shows how
many are out ("on (2 unanswered)"): it is dropped when they reach its
count. The summary names, per command, the connections being probed so.

A connection that a policy of "keepalive enforce" set shows it in SET BY:
the policy's number, as listed under the table, and how it reached the
connection (dialled, accepted, existing), or "ended" for a policy no
longer in force, whose values the connection keeps. Each policy in force
is listed with what it has set and how many of the connections listed
belong to its cgroup and carry it. -bpffs says where bpffs is mounted.

` + criteriaHelp + `

The table is grouped by process; -json prints one object per connection
instead, with pid, command, fd, uid, inode, netns, local, remote, state,
source, method (bpf or pidfd), enabled, idle, interval, count, user_timeout
and detection_time (durations as Go writes them), the timer (its count is
the probes unanswered), cgroup_id, set_by (the policy: cgroup, cgroup_id,
policy_id, how, set, left, in_force), the verdicts and the error, if any.
-pid audits the network namespace of that process only. On a terminal,
progress is drawn while an audit is slow.

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
		method := addMethodFlag(fs, "read")
		bpffs := addBPFFSFlag(fs)
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
			if *kernelOnly && *method != audit.MethodAuto {
				return usagef("-kernel-only reads no values: -method is not for it")
			}
			if *kernelOnly && *bpffs != "" {
				return usagef("-kernel-only reads no values: -bpffs, where the policies that set them are, is not for it")
			}
			o := audit.Options{Criteria: cf.criteria(), Filter: ff.filter(), KernelOnly: *kernelOnly, Method: *method, BPFFS: *bpffs}
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
	own := ownNetns()
	policy := policyNumbers(rep.Policies)
	for start := 0; start < len(rep.Conns); {
		end := start + 1
		for end < len(rep.Conns) && rep.Conns[end].PID == rep.Conns[start].PID &&
			(rep.Conns[end].PID != 0 || rep.Conns[end].Netns == rep.Conns[start].Netns) {
			end++
		}
		group := rep.Conns[start:end]
		where := ""
		if ns := group[0].Netns; ns != own {
			where = fmt.Sprintf("network namespace %d", ns)
		}
		switch {
		case group[0].PID != 0 && where != "":
			fmt.Fprintf(w, "%s (pid %d, %s): %s\n", group[0].Command, group[0].PID, where, plural(len(group), "connection"))
		case group[0].PID != 0:
			fmt.Fprintf(w, "%s (pid %d): %s\n", group[0].Command, group[0].PID, plural(len(group), "connection"))
		case where != "":
			fmt.Fprintf(w, "no process found (not permitted to look, or closed), %s: %s\n", where, plural(len(group), "connection"))
		default:
			fmt.Fprintf(w, "no process found (not permitted to look, or closed): %s\n", plural(len(group), "connection"))
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  FD\tLOCAL\tREMOTE\tSTATE\tKEEPALIVE\tIDLE\tINTERVAL\tCOUNT\tUSER TIMEOUT\tDETECTS IN\tSOURCE\tSET BY\tVERDICT\t")
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
			fmt.Fprintf(tw, "  %s\t%v\t%v\t%v\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\t%v\t\n",
				fd, c.Local, c.Remote, c.State, keepaliveCell(c), valueCell(c, c.Config.Idle), valueCell(c, c.Config.Interval),
				countCell(c), userTimeoutCell(c), detectCell(c), c.Source, setByCell(c, policy), c.Verdict)
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
	if p := probing(rep.Conns); p != "" {
		fmt.Fprint(w, wrap("peers not answering keepalive probes now, by command: "+p, ""))
	}
	if o.KernelOnly {
		fmt.Fprintln(w, "-kernel-only: values were not read from the sockets")
	} else {
		fmt.Fprint(w, wrap(methodsText(rep), ""))
	}
	printNamespaces(w, rep.Namespaces)
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
	printCoverage(w, rep)
}

// ownNetns returns the inode number of this process's network namespace,
// from its link in /proc ("net:[N]"); zero where there is none.
func ownNetns() uint64 {
	var ino uint64
	if link, err := os.Readlink("/proc/thread-self/ns/net"); err == nil {
		fmt.Sscanf(link, "net:[%d]", &ino)
	}
	return ino
}

// policyNumbers numbers the policies in force from 1, by the id of their
// cgroup.
func policyNumbers(cov []audit.Coverage) map[uint64]int {
	n := map[uint64]int{}
	for i, c := range cov {
		n[c.Policy.CgroupID] = i + 1
	}
	return n
}

// setByCell names the policy that set c: "#1 dialled", "ended (#1's
// cgroup)" or "ended (cgroup 1234)" for one no longer in force, "-" for
// none.
func setByCell(c audit.Conn, policy map[uint64]int) string {
	b := c.SetBy
	switch {
	case b == nil:
		return "-"
	case b.InForce && policy[b.CgroupID] != 0:
		return fmt.Sprintf("#%d %s", policy[b.CgroupID], b.How)
	case policy[b.CgroupID] != 0:
		return fmt.Sprintf("ended (#%d's cgroup)", policy[b.CgroupID])
	}
	return fmt.Sprintf("ended (cgroup %d)", b.CgroupID)
}

// probing counts, by command, the connections whose peer has not
// answered keepalive probes: "redis-cli 2, socat 1"; empty when none.
func probing(conns []audit.Conn) string {
	var order []string
	n := map[string]int{}
	for i := range conns {
		if conns[i].UnansweredProbes() == 0 {
			continue
		}
		cmd := conns[i].Command
		if cmd == "" {
			cmd = "(no process found)"
		}
		if n[cmd] == 0 {
			order = append(order, cmd)
		}
		n[cmd]++
	}
	parts := make([]string, len(order))
	for i, cmd := range order {
		parts[i] = fmt.Sprintf("%s %d", cmd, n[cmd])
	}
	return strings.Join(parts, ", ")
}

// methodsText says how the values were read, and why the BPF iterator was
// not used where it was not.
func methodsText(rep *audit.Report) string {
	var bpf, pidfd int
	for i := range rep.Conns {
		switch rep.Conns[i].Method {
		case audit.MethodBPF:
			bpf++
		case audit.MethodPidfd:
			pidfd++
		}
	}
	var s string
	switch {
	case bpf == 0 && pidfd == 0:
		s = "no values were read from the sockets"
	case pidfd == 0 && rep.BPFError == nil:
		s = "values read through the BPF iterator: no process was ptraced"
	case bpf == 0:
		s = "values read with pidfd_getfd (ptrace)"
	default:
		s = fmt.Sprintf("values of %s read through the BPF iterator, of %s with pidfd_getfd (ptrace)", plural(bpf, "connection"), plural(pidfd, "connection"))
	}
	if rep.BPFError != nil {
		s += "; the BPF iterator could not run: " + message(rep.BPFError)
	}
	return s
}

// printNamespaces says how many network namespaces were listed, when more
// than one, and which could not be.
func printNamespaces(w io.Writer, nss []audit.Namespace) {
	listed := 0
	var failed []audit.Namespace
	for _, ns := range nss {
		if ns.Err != nil {
			failed = append(failed, ns)
		} else {
			listed++
		}
	}
	if listed > 1 {
		fmt.Fprintf(w, "%s listed\n", plural(listed, "network namespace"))
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "%s not listed:\n", plural(len(failed), "network namespace"))
		for _, ns := range failed {
			fmt.Fprint(w, wrap(fmt.Sprintf("%d (of pid %d): %s", ns.Inode, ns.PID, message(ns.Err)), "  "))
		}
	}
}

// printCoverage lists the policies in force, with what each has set and
// how many of the connections listed it covers, and the cgroups of the
// policies that have ended whose values connections keep.
func printCoverage(w io.Writer, rep *audit.Report) {
	if rep.PoliciesErr != nil {
		fmt.Fprint(w, wrap("the policies of keepalive enforce could not be read: "+message(rep.PoliciesErr), ""))
	}
	var ended []uint64
	n, paths := map[uint64]int{}, map[uint64]string{}
	for i := range rep.Conns {
		if b := rep.Conns[i].SetBy; b != nil && !b.InForce {
			if n[b.CgroupID] == 0 {
				ended = append(ended, b.CgroupID)
			}
			n[b.CgroupID]++
			paths[b.CgroupID] = b.Cgroup
		}
	}
	if len(ended) > 0 {
		parts := make([]string, len(ended))
		for i, id := range ended {
			where := "removed since"
			if paths[id] != "" {
				where = paths[id]
			}
			parts[i] = fmt.Sprintf("cgroup %d (%s): %d", id, where, n[id])
		}
		fmt.Fprint(w, wrap("connections that keep the values of a policy that has ended, by its cgroup: "+strings.Join(parts, ", "), ""))
	}
	if len(rep.Policies) == 0 {
		return
	}
	cgroupsKnown := false
	for i := range rep.Conns {
		cgroupsKnown = cgroupsKnown || rep.Conns[i].Method == audit.MethodBPF
	}
	fmt.Fprintf(w, "%s in force (keepalive enforce):\n", plural(len(rep.Policies), "policy"))
	for i, c := range rep.Policies {
		p := c.Policy
		fmt.Fprintf(w, "  #%d %s: %s, %s, since %s\n", i+1, p.Cgroup, configText(p.Config), p.Filter, p.Since.Format(time.DateTime))
		n := p.Counts
		line := fmt.Sprintf("set %s (%d dialled, %d accepted, %d existing)", plural(int(n.Set()), "connection"), n.Dialled, n.Accepted, n.Existing)
		if p.Wins == enforce.ProgramWins {
			line += fmt.Sprintf(", left options to the program on %d", n.Yielded)
		} else {
			line += fmt.Sprintf(", kept %s from changing its values", plural(int(n.Kept), "setsockopt call"))
		}
		if cgroupsKnown {
			line += fmt.Sprintf("; of the connections above, %d belong to its cgroup and %d carry it", c.Connections, c.Carrying)
		} else {
			line += fmt.Sprintf("; of the connections above, %d carry it (which belong to its cgroup only the BPF iterator reads)", c.Carrying)
		}
		if note := notes(p); note != "-" {
			line += "; " + note
		}
		fmt.Fprint(w, wrap(line, "     "))
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

// keepaliveCell is "on", "off", or "?" when not known; with probes out
// unanswered, how many; with the kernel's view only, the keepalive timer's
// next firing.
func keepaliveCell(c audit.Conn) string {
	switch {
	case c.Source == audit.SourceNone:
		return "?"
	case !c.Enabled:
		return "off"
	case c.UnansweredProbes() > 0:
		return fmt.Sprintf("on (%d unanswered)", c.UnansweredProbes())
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
