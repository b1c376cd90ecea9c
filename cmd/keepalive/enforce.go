package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

var enforceCommand = &command{
	name:    "enforce",
	args:    "-cgroup PATH [flags] | -list | -remove -cgroup PATH",
	summary: "put a keepalive policy on a cgroup",
	help: `Puts a policy on a cgroup v2 directory (a systemd service's, a
container's, a Kubernetes pod's): every TCP connection that a process in it
establishes from then on, dialled or accepted, gets the Config, and so do
the connections its processes already hold. No process is restarted or
traced: BPF programs do it in the kernel. The policy is pinned in bpffs
(/sys/fs/bpf/keepalive, mounted if need be) and outlives this command;
enforcing again on the same cgroup replaces it, atomically, and never adds
a second one. -list shows the policies in force and what each has set;
-remove ends one.

A zero field of the Config is left alone on the socket (the system
default, or the program's own value); keepalive is always turned on, or
off with -off. An invalid Config is refused before anything is loaded.

-wins says who wins when a program sets keepalive itself after connecting,
as Go's net.Dialer does (15s, 15s, 9): "policy" (the default) keeps the
policy's value for each field it sets, swallowing the program's
setsockopt, and leaves the fields it does not set to the program;
"program" keeps whatever the program sets, before or after connecting, and
sets only the rest.

-remote and -port, each given as often as needed, narrow the policy to the
flows that cross a firewall: a remote address within one of the prefixes
(IPv4 or IPv6), and a local or remote port among the ports.

A connection belongs to the cgroup of the process that made its socket
(for an accepted one, the listening socket) when it made it. The policy
covers the cgroup and every cgroup below it; where a cgroup below has a
policy of its own, the nearer one wins. Connections in other network
namespaces (containers) are reached too.

When a policy ends (-remove, or the cgroup is removed), new connections
are not touched; those it set keep the values it set, as a socket keeps
any option until it is set again or closed.

It needs root: CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or CAP_SYS_ADMIN,
which the network namespaces of other processes need too; Linux 5.15 or
later with BTF. An error names what is missing, and leaves nothing
attached or pinned.

` + configHelp,
	examples: []example{
		{"keepalive enforce -cgroup /sys/fs/cgroup/system.slice/app.service -config idle=60s,interval=10s,count=5", "every connection of the service, existing and future, gets the default\nConfig"},
		{"keepalive enforce -cgroup /sys/fs/cgroup/system.slice/app.service -remote 10.0.0.0/8 -port 5432 -idle 30s -wins program", "only its flows to or from 10.0.0.0/8 on port 5432: idle 30s, the rest as\nby default, where the program does not set its own"},
		{"keepalive enforce -list", "the policies in force, with what each has set"},
		{"keepalive enforce -remove -cgroup /sys/fs/cgroup/system.slice/app.service", "end the service's policy; its connections keep their values"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		cgroup := fs.String("cgroup", "", "the cgroup v2 directory the policy goes on, a `path`")
		cf := addConfigFlags(fs)
		var f enforce.Filter
		fs.Var(&remotesValue{&f.Remote}, "remote", "only flows whose remote address is this `address` or within this prefix, such as 10.0.0.0/8; may be given again")
		fs.Var(&portsValue{&f.Ports}, "port", "only flows whose local or remote port is this `number`; may be given again")
		wins := enforce.PolicyWins
		fs.Var(&winsValue{&wins}, "wins", "who wins when the program sets keepalive itself: the `side`, policy or program")
		fs.Lookup("wins").DefValue = "policy"
		list := boolFlag(fs, "list", "show the policies in force")
		remove := boolFlag(fs, "remove", "end the policy on -cgroup")
		asJSON := boolFlag(fs, "json", "with -list: one JSON object per policy")
		bpffs := fs.String("bpffs", "", "where bpffs is mounted, a `directory` (default /sys/fs/bpf, mounted if need be)")
		return func(ctx context.Context, e *env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			set := map[string]bool{}
			fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
			policyFlags := []string{"config", "off", "remote", "port", "wins"}
			for _, fl := range fields {
				policyFlags = append(policyFlags, fl.key)
			}
			given := func(names ...string) string {
				for _, n := range names {
					if set[n] {
						return n
					}
				}
				return ""
			}
			switch {
			case *list && *remove:
				return usagef("-list and -remove: choose one")
			case *asJSON && !*list:
				return usagef("-json is for -list")
			case *list:
				if n := given(append(policyFlags, "cgroup")...); n != "" {
					return usagef("-list takes no -%s", n)
				}
				return listPolicies(ctx, e.stdout, *bpffs, *asJSON)
			case *cgroup == "":
				return usagef("missing -cgroup (or -list)")
			case *remove:
				if n := given(policyFlags...); n != "" {
					return usagef("-remove takes no -%s", n)
				}
				return removePolicy(ctx, e.stdout, *bpffs, *cgroup)
			}
			if given(append([]string{"config", "off"}, policyFieldNames()...)...) == "" {
				return usagef("missing -config (or -idle, -interval, -count, -user-timeout, -off): say what to set")
			}
			c, err := cf.config()
			if err != nil {
				return err
			}
			res, err := enforce.Enforce(ctx, enforce.Options{Cgroup: *cgroup, Config: c, Filter: f, Wins: wins, BPFFS: *bpffs})
			if res != nil {
				printEnforced(e.stdout, res)
			}
			var verr *keepalive.ValidationError
			if errors.Is(err, enforce.ErrNotCgroup2) || errors.As(err, &verr) {
				return usageError{message(err)}
			}
			return err
		}
	},
}

// policyFieldNames is the names of the per-field Config flags.
func policyFieldNames() []string {
	names := make([]string, len(fields))
	for i, fl := range fields {
		names[i] = fl.key
	}
	return names
}

// printEnforced says what enforce did.
func printEnforced(w io.Writer, res *enforce.Result) {
	p := res.Policy
	fmt.Fprintf(w, "policy in force on %s (cgroup %d), pinned at %s\n", p.Cgroup, p.CgroupID, p.Pins)
	describePolicy(w, p)
	if r := res.Replaced; r != nil {
		fmt.Fprintf(w, "  replaced %s, in force since %s, which had set %s\n", configText(r.Config), r.Since.Format(time.DateTime), plural(int(r.Counts.Set()), "connection"))
	}
	fmt.Fprintf(w, "every connection established from now on gets it; %s set now (%s searched)\n",
		plural(len(res.Existing), "existing connection end"), plural(res.Namespaces, "network namespace"))
}

// describePolicy writes a policy's Config, flows, who wins and since when,
// one to a line.
func describePolicy(w io.Writer, p enforce.Policy) {
	fmt.Fprintf(w, "  config  %s\n", configText(p.Config))
	fmt.Fprintf(w, "  flows   %s\n", p.Filter)
	fmt.Fprintf(w, "  wins    %s\n", winsText(p.Wins))
	fmt.Fprintf(w, "  since   %s\n", p.Since.Format(time.DateTime+" MST"))
}

// configText is a policy's Config as text, the zero one in words.
func configText(c keepalive.Config) string {
	if c == (keepalive.Config{}) {
		return "keepalive on, every value left as it is"
	}
	return c.String()
}

// winsText says who wins, and what that means.
func winsText(w enforce.Wins) string {
	if w == enforce.ProgramWins {
		return "program (what a process sets itself stays; the policy sets the rest)"
	}
	return "policy (a process's own setsockopt of an option the policy sets is swallowed)"
}

// listPolicies prints the policies in force.
func listPolicies(ctx context.Context, w io.Writer, bpffs string, asJSON bool) error {
	ps, err := enforce.List(ctx, bpffs)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(w)
		for _, p := range ps {
			if err := enc.Encode(policyJSON(p)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(ps) == 0 {
		fmt.Fprintln(w, "no policy in force")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CGROUP\tCONFIG\tFLOWS\tWINS\tSINCE\tSET\tDIALLED\tACCEPTED\tEXISTING\tNOTES\t")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t\n", p.Cgroup, configText(p.Config), p.Filter, p.Wins, p.Since.Format(time.DateTime), p.Counts.Set(), p.Counts.Dialled, p.Counts.Accepted, p.Counts.Existing, notes(p))
	}
	return tw.Flush()
}

// notes says what else a policy's counters and state show.
func notes(p enforce.Policy) string {
	var ns []string
	if !p.Attached {
		ns = append(ns, "cgroup removed: the programs are detached; -remove cleans up")
	}
	c := p.Counts
	if c.Kept > 0 {
		ns = append(ns, fmt.Sprintf("kept %s from changing its values", plural(int(c.Kept), "setsockopt call")))
	}
	if c.Yielded > 0 {
		ns = append(ns, fmt.Sprintf("left options to the program on %s", plural(int(c.Yielded), "connection")))
	}
	if c.Nearer > 0 {
		ns = append(ns, fmt.Sprintf("%s left to a nearer cgroup's policy", plural(int(c.Nearer), "connection")))
	}
	if c.Failed > 0 {
		ns = append(ns, fmt.Sprintf("the kernel refused %s", plural(int(c.Failed), "option")))
	}
	if len(ns) == 0 {
		return "-"
	}
	return strings.Join(ns, "; ")
}

// policyJSON is a policy as -list -json prints it.
func policyJSON(p enforce.Policy) any {
	type counts struct {
		Set      uint64 `json:"set"`
		Dialled  uint64 `json:"dialled"`
		Accepted uint64 `json:"accepted"`
		Existing uint64 `json:"existing"`
		Kept     uint64 `json:"kept"`
		Yielded  uint64 `json:"yielded"`
		Nearer   uint64 `json:"nearer"`
		Failed   uint64 `json:"failed"`
	}
	remote := make([]string, len(p.Filter.Remote))
	for i, r := range p.Filter.Remote {
		remote[i] = r.String()
	}
	return struct {
		Cgroup   string    `json:"cgroup"`
		CgroupID uint64    `json:"cgroup_id"`
		Config   string    `json:"config"`
		Remote   []string  `json:"remote"`
		Ports    []uint16  `json:"ports"`
		Wins     string    `json:"wins"`
		Since    time.Time `json:"since"`
		Attached bool      `json:"attached"`
		Pins     string    `json:"pins"`
		Counts   counts    `json:"counts"`
	}{p.Cgroup, p.CgroupID, p.Config.String(), remote, append([]uint16{}, p.Filter.Ports...), p.Wins.String(), p.Since, p.Attached, p.Pins, counts{
		p.Counts.Set(), p.Counts.Dialled, p.Counts.Accepted, p.Counts.Existing, p.Counts.Kept, p.Counts.Yielded, p.Counts.Nearer, p.Counts.Failed,
	}}
}

// removePolicy ends the policy on cgroup and says what it had done.
func removePolicy(ctx context.Context, w io.Writer, bpffs, cgroup string) error {
	p, err := enforce.Remove(ctx, bpffs, cgroup)
	if p != nil {
		fmt.Fprintf(w, "policy on %s removed; it had set %s since %s\n", p.Cgroup, plural(int(p.Counts.Set()), "connection"), p.Since.Format(time.DateTime+" MST"))
		describePolicy(w, *p)
		fmt.Fprintln(w, "the connections it set keep their values; new connections are not touched")
	}
	return err
}

// remotesValue is -remote, which may be given again.
type remotesValue struct{ ps *[]netip.Prefix }

func (v *remotesValue) form() string { return (&remoteValue{}).form() }

func (v *remotesValue) Set(s string) error {
	var p netip.Prefix
	if err := (&remoteValue{&p}).Set(s); err != nil {
		return err
	}
	*v.ps = append(*v.ps, p)
	return nil
}

func (v *remotesValue) String() string {
	if v == nil || v.ps == nil {
		return ""
	}
	s := make([]string, len(*v.ps))
	for i, p := range *v.ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// portsValue is -port, which may be given again.
type portsValue struct{ ports *[]uint16 }

func (v *portsValue) form() string { return (&portValue{}).form() }

func (v *portsValue) Set(s string) error {
	var p uint16
	if err := (&portValue{&p}).Set(s); err != nil {
		return err
	}
	*v.ports = append(*v.ports, p)
	return nil
}

func (v *portsValue) String() string {
	if v == nil || v.ports == nil {
		return ""
	}
	s := make([]string, len(*v.ports))
	for i, p := range *v.ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

// winsValue is -wins.
type winsValue struct{ w *enforce.Wins }

func (v *winsValue) form() string { return "want policy or program" }

func (v *winsValue) Set(s string) error {
	w, err := enforce.ParseWins(s)
	if err != nil {
		return errors.New(v.form())
	}
	*v.w = w
	return nil
}

func (v *winsValue) String() string {
	if v == nil || v.w == nil {
		return ""
	}
	return v.w.String()
}
