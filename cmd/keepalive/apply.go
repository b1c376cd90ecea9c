package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/keepalive-go/keepalive/ops/audit"
)

var applyCommand = &command{
	name:    "apply",
	args:    "-pid P [flags]",
	summary: "change keepalive on a running process",
	help: `Sets a Config on the TCP connections that a running process holds, without
restarting it: each socket is duplicated into this command with pidfd_getfd
(Linux 5.6 and later), the Config is set on the duplicate, which is the
same socket, and the values are read back and shown. Only sockets that the
kernel lists as TCP are touched; an invalid Config changes nothing. -port
and -remote choose among the process's connections.

It needs ptrace access to the process: the same user (and a process that
has not changed its user), or root (CAP_SYS_PTRACE); without it, it says
what is missing and changes nothing.

The exit status is 1 when the process holds no connection the flags
select, or when a socket could not be changed (the others are changed all
the same).

` + configHelp + `

` + criteriaHelp,
	examples: []example{
		{"keepalive apply -pid 1234 -port 5432 -config idle=60s,interval=10s,count=5", "set the default Config on process 1234's connections to or from port\n5432, and show each before and after"},
		{"keepalive apply -pid 1234 -remote 127.0.0.0/8 -idle 30s -idle-timeout 350s", "idle 30s, the rest as by default, on its connections to loopback; judge\nthe result against AWS NLB's idle timeout"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		ff := addFilterFlags(fs, "the process whose connections to change, by `pid` (required)")
		cf := addConfigFlags(fs)
		crf := addCriteriaFlags(fs)
		return func(ctx context.Context, e *env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			if !set["pid"] {
				return usagef("missing -pid")
			}
			if !set["config"] && !set["off"] {
				given := false
				for _, fl := range fields {
					given = given || set[fl.key]
				}
				if !given {
					return usagef("missing -config (or -idle, -interval, -count, -user-timeout, -off): say what to set")
				}
			}
			c, err := cf.config()
			if err != nil {
				return err
			}
			f := ff.filter()
			results, err := audit.Apply(ctx, f.PID, f, c)
			if len(results) > 0 {
				if perr := printApply(e.stdout, results, crf.criteria()); err == nil {
					err = perr
				}
			}
			switch {
			case err != nil:
				return noProcess(err, f.PID)
			case len(results) == 0:
				return fmt.Errorf("process %d holds no TCP connection that the flags select", f.PID)
			}
			return nil
		}
	},
}

// printApply prints what apply did to each socket, judged against cr, and
// returns an error when it could not change one.
func printApply(w io.Writer, results []audit.Result, cr audit.Criteria) error {
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	first := results[0].Before
	fmt.Fprintf(w, "%s (pid %d): changed %d of %s\n", first.Command, first.PID, len(results)-failed, plural(len(results), "connection"))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FD\tLOCAL\tREMOTE\tBEFORE\tAFTER (read back)\tVERDICT\t")
	for _, r := range results {
		cr.Judge(&r.After)
		after, verdict := inForce(r.After), r.After.Verdict.String()
		if r.Err != nil {
			after, verdict = "not changed: "+message(r.Err), "-"
		}
		fmt.Fprintf(tw, "  %d\t%v\t%v\t%s\t%s\t%s\t\n", r.Before.FD, r.Before.Local, r.Before.Remote, inForce(r.Before), after, verdict)
	}
	tw.Flush()
	fmt.Fprintln(w, checked(cr))
	if failed > 0 {
		return fmt.Errorf("%s of process %d could not be changed", plural(failed, "connection"), first.PID)
	}
	return nil
}

// inForce describes a connection's keepalive as read from its socket:
// "on idle=2s,interval=1s,count=3", "off idle=7200s,...", with "no user
// timeout" when it has none.
func inForce(c audit.Conn) string {
	if c.Source != audit.SourceSocket {
		return "not read"
	}
	kc := c.Config
	kc.Off = false
	s := "off " + kc.String()
	if c.Enabled {
		s = "on " + kc.String()
	}
	if kc.UserTimeout == 0 {
		s += ", no user timeout"
	}
	return s
}
