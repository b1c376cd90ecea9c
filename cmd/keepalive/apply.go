package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/audit"
)

var applyCommand = &command{
	name:    "apply",
	args:    "-pid P [flags]",
	summary: "change keepalive on a running process",
	help: `Changes keepalive on the TCP connections that a running process holds,
without restarting it, and reads the values back. The change is made by a
BPF TCP iterator that touches only the sockets selected, by their inode
numbers (no ptrace; CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN; Linux 6.1
and later), or, where that cannot run, on a duplicate of each socket made
with pidfd_getfd (Linux 5.6 and later), which is the same socket. -method
chooses; the output says which was used, and why the iterator could not
run. Only sockets that the kernel lists as TCP are touched. -port and
-remote choose among the process's connections.

Only what is given changes. Each field given, in -config
idle=30s,count=4 (the form keepalive.ParseConfig reads) or by its own flag
(-idle, -interval, -count, -user-timeout; a flag wins over -config), is set
on every selected socket, and each field not given is left as each socket
has it: there are no defaults here. So a user timeout, which cuts off a
live peer that only stopped reading, is set only when -user-timeout or
user-timeout= is given. 0 puts a field's system default back (for
-user-timeout, no user timeout), and -config "" puts every field's back.
Giving idle, interval or count turns keepalive on; -off, or "off" in
-config, turns it off; giving only the user timeout leaves keepalive on or
off as it is.

It prints what it sets and what it keeps, then each socket before and
after, as read from the socket. Each socket is changed whole or not at all:
one that refuses a value keeps the values it had. An invalid value changes
nothing.

Finding the process's sockets needs ptrace read access to it (/proc/PID/fd):
the same user, or root (CAP_SYS_PTRACE); pidfd_getfd needs ptrace attach
access too, the BPF iterator does not. Without what it needs, it says what
is missing and changes nothing.

` + criteriaHelp,
	examples: []example{
		{"keepalive apply -pid 1234 -port 5432 -config idle=60s,interval=10s,count=5", "on process 1234's connections to or from port 5432, turn keepalive on\n" +
			"with idle 60s, interval 10s and 5 probes; each keeps its user timeout,\nor none. Shows each before and after"},
		{"keepalive apply -pid 1234 -remote 127.0.0.0/8 -idle 30s -idle-timeout 350s", "idle 30s on its connections to loopback, the rest as each has it; judge\nthe result against AWS NLB's idle timeout"},
		{"keepalive apply -pid 1234 -port 5432 -user-timeout 0", "remove the user timeout of its connections to or from port 5432, and\nchange nothing else"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		ff := addFilterFlags(fs, "the process whose connections to change, by `pid` (required)")
		cf := addConfigFlags(fs)
		for _, fl := range fields {
			fs.Lookup(fl.key).DefValue = "" // as each socket has it
		}
		fs.Lookup("off").Usage = "turn keepalive off (SO_KEEPALIVE 0), as \"off\" in -config does; the other fields given are still set, for when it is turned on again"
		crf := addCriteriaFlags(fs)
		method := addMethodFlag(fs, "change")
		return func(ctx context.Context, e *env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			if !set["pid"] {
				return usagef("missing -pid")
			}
			ch := cf.change()
			if ch.Fields == 0 {
				return usagef("missing -config (or -idle, -interval, -count, -user-timeout, -off): say what to set")
			}
			if err := ch.Config.Validate(); err != nil {
				return badConfig(err)
			}
			ch.Method = *method
			f := ff.filter()
			results, err := audit.Apply(ctx, f.PID, f, ch)
			if len(results) > 0 {
				if perr := printApply(e.stdout, ch, results, crf.criteria()); err == nil {
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

// changeFields are the audit.Fields of fields, in its order.
var changeFields = [len(fields)]audit.Fields{audit.FieldIdle, audit.FieldInterval, audit.FieldCount, audit.FieldUserTimeout}

// change returns what the flags ask apply to change: the fields they give,
// at the values given, and nothing else. Keepalive is turned off by -off or
// "off" in -config, and on when idle, interval or count is given without
// them.
func (f *configFlags) change() audit.Change {
	var ch audit.Change
	for i, fl := range fields {
		switch {
		case *f.own[i]:
			fl.copy(&ch.Config, f.vals)
		case f.named[i]:
			fl.copy(&ch.Config, f.text)
		default:
			continue
		}
		ch.Fields |= changeFields[i]
	}
	switch {
	case f.offGiven():
		ch.Config.Off = *f.off
		ch.Fields |= audit.FieldKeepAlive
	case f.text.Off:
		ch.Config.Off = true
		ch.Fields |= audit.FieldKeepAlive
	case ch.Fields&(audit.FieldIdle|audit.FieldInterval|audit.FieldCount) != 0:
		ch.Fields |= audit.FieldKeepAlive
	}
	return ch
}

// changeText says what ch sets and what it keeps, one line each:
// "set:  keepalive on, idle 30s" and "kept: interval, count, user timeout,
// as each socket has them". A zero field is written with the system default
// in sys, when known.
func changeText(ch audit.Change, sys keepalive.Config) (set, kept string) {
	var sets, keeps []string
	if ch.Fields&audit.FieldKeepAlive != 0 {
		sets = append(sets, "keepalive "+onOff(!ch.Config.Off))
	} else {
		keeps = append(keeps, "keepalive on or off")
	}
	for i, part := range describeFields(ch.Config, sys) {
		if ch.Fields&changeFields[i] != 0 {
			sets = append(sets, part)
		} else {
			keeps = append(keeps, strings.ReplaceAll(fields[i].key, "-", " "))
		}
	}
	set = strings.Join(sets, ", ")
	if len(keeps) > 0 {
		kept = strings.Join(keeps, ", ") + ", as each socket has them"
	}
	return set, kept
}

// printApply prints what apply set and kept, and what it did to each socket,
// judged against cr, and returns an error when it could not change one.
func printApply(w io.Writer, ch audit.Change, results []audit.Result, cr audit.Criteria) error {
	sys, _ := keepalive.SystemDefaults()
	set, kept := changeText(ch, sys)
	fmt.Fprintf(w, "set:  %s\n", set)
	if kept != "" {
		fmt.Fprintf(w, "kept: %s\n", kept)
	}
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
	fmt.Fprint(w, wrap(applyMethods(results), ""))
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

// applyMethods says how the sockets were changed, and why the BPF iterator
// did not change those it did not.
func applyMethods(results []audit.Result) string {
	var bpf, pidfd int
	var why error
	for _, r := range results {
		switch r.After.Method {
		case audit.MethodBPF:
			bpf++
		case audit.MethodPidfd:
			pidfd++
		}
		if why == nil {
			why = r.BPFError
		}
	}
	var s string
	switch {
	case pidfd == 0 && bpf == 0:
		return "no socket was changed"
	case pidfd == 0:
		s = "changed through the BPF iterator: the process was not ptraced"
	case bpf == 0:
		s = "changed with pidfd_getfd (ptrace)"
	default:
		s = fmt.Sprintf("%s changed through the BPF iterator, %s with pidfd_getfd (ptrace)", plural(bpf, "connection"), plural(pidfd, "connection"))
	}
	if why != nil {
		s += "; the BPF iterator could not change them: " + message(why)
	}
	return s
}
