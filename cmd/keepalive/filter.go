package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/keepalive-go/keepalive/ops/audit"
)

// The flags that audit, apply and exporter share: which connections
// (-pid, -port, -remote) and what an operator knows of their paths
// (-idle-timeout, -detect).

// filterFlags are -pid, -port and -remote.
type filterFlags struct {
	pid    int
	port   uint16
	remote netip.Prefix
}

// addFilterFlags defines -pid, with pidUsage, -port and -remote.
func addFilterFlags(fs *flag.FlagSet, pidUsage string) *filterFlags {
	f := &filterFlags{}
	fs.Var(&pidValue{&f.pid}, "pid", pidUsage)
	fs.Var(&portValue{&f.port}, "port", "only connections whose local or remote port is this `number`")
	fs.Var(&remoteValue{&f.remote}, "remote", "only connections whose remote address is this `address` or within this prefix, such as 10.0.0.0/8")
	for _, name := range []string{"pid", "port", "remote"} {
		fs.Lookup(name).DefValue = ""
	}
	return f
}

// filter returns the audit.Filter the flags give.
func (f *filterFlags) filter() audit.Filter {
	return audit.Filter{PID: f.pid, Port: f.port, Remote: f.remote}
}

// criteriaFlags are -idle-timeout and -detect.
type criteriaFlags struct{ idleTimeout, detect *time.Duration }

func addCriteriaFlags(fs *flag.FlagSet) *criteriaFlags {
	return &criteriaFlags{
		idleTimeout: durationFlag(fs, "idle-timeout", 0, "350s or 4m", "not asking",
			"how long the path's firewalls, NATs or load balancers keep an idle flow, a `duration`: a connection whose first probe comes at or after it, or with keepalive off, is at-risk"),
		detect: durationFlag(fs, "detect", 0, "30s or 2m", "not asking",
			"how soon a vanished peer must be noticed, a `duration`: a connection that takes longer, or never does, is slow-detect"),
	}
}

func (c *criteriaFlags) criteria() audit.Criteria {
	return audit.Criteria{IdleTimeout: *c.idleTimeout, Detect: *c.detect}
}

// criteriaHelp is the paragraph -h prints for the commands that judge
// connections.
const criteriaHelp = `With -idle-timeout, a connection is at-risk when a middlebox that forgets
flows idle that long would forget it: keepalive off, or its first probe at
or after the timeout. With -detect, it is slow-detect when a vanished peer
is noticed later than that, or never. Each connection gets one verdict, the
first of these that holds: off (keepalive off), at-risk, slow-detect,
unknown (its values could not be read and what the kernel shows cannot
decide), ok.`

// checked says what the verdicts were checked against.
func checked(cr audit.Criteria) string {
	switch {
	case cr.IdleTimeout > 0 && cr.Detect > 0:
		return fmt.Sprintf("checked against an idle timeout of %v and detection within %v", cr.IdleTimeout, cr.Detect)
	case cr.IdleTimeout > 0:
		return fmt.Sprintf("checked against an idle timeout of %v", cr.IdleTimeout)
	case cr.Detect > 0:
		return fmt.Sprintf("checked against detection within %v", cr.Detect)
	}
	return "no -idle-timeout or -detect given: the verdicts say only whether keepalive is on"
}

// pidValue is -pid.
type pidValue struct{ pid *int }

func (v *pidValue) form() string { return "want a process id such as 1234" }

func (v *pidValue) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return errors.New(v.form())
	}
	*v.pid = n
	return nil
}

func (v *pidValue) String() string {
	if v == nil || v.pid == nil || *v.pid == 0 {
		return ""
	}
	return strconv.Itoa(*v.pid)
}

// portValue is -port.
type portValue struct{ port *uint16 }

func (v *portValue) form() string { return "want a port number from 1 to 65535" }

func (v *portValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return errors.New(v.form())
	}
	*v.port = uint16(n)
	return nil
}

func (v *portValue) String() string {
	if v == nil || v.port == nil || *v.port == 0 {
		return ""
	}
	return strconv.Itoa(int(*v.port))
}

// remoteValue is -remote: an address, or a prefix.
type remoteValue struct{ p *netip.Prefix }

func (v *remoteValue) form() string {
	return "want an address such as 10.1.2.3 or a prefix such as 10.0.0.0/8"
}

func (v *remoteValue) Set(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		a, aerr := netip.ParseAddr(s)
		if aerr != nil || a.Zone() != "" {
			return errors.New(v.form())
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	*v.p = p.Masked()
	return nil
}

func (v *remoteValue) String() string {
	if v == nil || v.p == nil || !v.p.IsValid() {
		return ""
	}
	return v.p.String()
}

// addMethodFlag defines -method, for how to reach the sockets of other
// processes.
func addMethodFlag(fs *flag.FlagSet, what string) *audit.Method {
	m := new(audit.Method)
	fs.Var(&methodValue{m}, "method", "how to "+what+" the sockets of other processes, a `method`: bpf (a BPF TCP iterator, no ptrace), pidfd (pidfd_getfd, which needs ptrace access) or auto (bpf where it can run, else pidfd)")
	fs.Lookup("method").DefValue = "auto"
	return m
}

// methodValue is -method.
type methodValue struct{ m *audit.Method }

func (v *methodValue) form() string { return "want auto, bpf or pidfd" }

func (v *methodValue) Set(s string) error {
	m, err := audit.ParseMethod(s)
	if err != nil {
		return errors.New(v.form())
	}
	*v.m = m
	return nil
}

func (v *methodValue) String() string {
	if v == nil || v.m == nil {
		return ""
	}
	return v.m.String()
}

// addBPFFSFlag defines -bpffs, where audit and the exporter find the
// policies of keepalive enforce.
func addBPFFSFlag(fs *flag.FlagSet) *string {
	return fs.String("bpffs", "", "where bpffs is mounted, a `directory`, to find the policies of keepalive enforce (default /sys/fs/bpf)")
}
