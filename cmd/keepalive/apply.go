package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/audit"
)

const applyUsage = `usage: keepalive apply -pid P [-port N] [-remote PREFIX] -config TEXT

Sets keepalive on the TCP connections that a running process holds, without
restarting it: each socket is duplicated into this command with pidfd_getfd
(Linux 5.6 and later), the Config is set on the duplicate, which is the
same socket, and the values are read back. Only TCP sockets are touched.
Each given field is written and keepalive turned on; a field not given
keeps the socket's current value. An invalid Config changes nothing.

It needs the same user as the process, or root (CAP_SYS_PTRACE). -port and
-remote choose among the process's connections.

    keepalive apply -pid 1234 -port 5432 -config idle=60s,interval=10s,count=5

Exit status: 0 when every chosen connection was changed, 1 when none was
found or one could not be changed, 2 for a bad command line or Config.
`

func applyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keepalive apply", applyUsage)
	ff := addFilterFlags(cmd.fs, "the process whose connections to change (required)")
	cf := addConfigFlags(cmd.fs, keepalive.Config{})
	crf := addCriteriaFlags(cmd.fs)
	pos, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return cmd.usageError(stderr, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	set := map[string]bool{}
	cmd.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["pid"] {
		return cmd.usageError(stderr, "missing -pid")
	}
	if !set["config"] && !set["idle"] && !set["interval"] && !set["count"] && !set["user-timeout"] {
		return cmd.usageError(stderr, "missing -config (or -idle, -interval, -count, -user-timeout)")
	}
	f, err := ff.filter()
	if err != nil {
		return cmd.usageError(stderr, err.Error())
	}
	if f.PID == 0 {
		return cmd.usageError(stderr, "-pid 0 is not a process")
	}
	cr, err := crf.criteria()
	if err != nil {
		return cmd.usageError(stderr, err.Error())
	}
	c, err := cf.config(cmd.fs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	results, err := audit.Apply(ctx, f.PID, f, c)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stderr, "keepalive: no process %d\n", f.PID)
		return exitFail
	}
	if err != nil && len(results) == 0 {
		fmt.Fprintf(stderr, "keepalive: %v\n", err)
		return exitFail
	}
	if len(results) == 0 {
		fmt.Fprintf(stderr, "keepalive: process %d holds no TCP connection that the filters select\n", f.PID)
		return exitFail
	}
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	first := results[0].Before
	fmt.Fprintf(stdout, "%s (pid %d): set %s on %d of %s\n", first.Command, first.PID, c, len(results)-failed, plural(len(results), "connection"))
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FD\tLOCAL\tREMOTE\tBEFORE\tAFTER (read back)\tVERDICT\t")
	for _, r := range results {
		cr.Judge(&r.After)
		after, verdict := inForce(r.After), r.After.Verdict.String()
		if r.Err != nil {
			after, verdict = "not changed: "+r.Err.Error(), "-"
		}
		fmt.Fprintf(tw, "  %d\t%v\t%v\t%s\t%s\t%s\t\n", r.Before.FD, r.Before.Local, r.Before.Remote, inForce(r.Before), after, verdict)
	}
	tw.Flush()
	if err != nil {
		fmt.Fprintf(stderr, "keepalive: stopped: %v\n", err)
		return exitFail
	}
	if failed > 0 {
		return exitFail
	}
	return exitOK
}

// inForce describes a connection's keepalive as read from its socket:
// "on idle=2s,interval=1s,count=3", "off idle=7200s,...".
func inForce(c audit.Conn) string {
	if c.Source != audit.SourceSocket {
		return "not read"
	}
	s := "off " + c.Config.String()
	if c.Enabled {
		s = "on " + c.Config.String()
	}
	if c.Config.UserTimeout == 0 {
		s += ",no user timeout"
	}
	return s
}
