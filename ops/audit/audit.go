// Package audit reads the TCP keepalive state of the connections on a Linux
// host, and changes it on the sockets of a running process, without
// restarting anything.
//
// It is the one way the keepalive command's audit and apply, its Prometheus
// exporter and its textfile writer read the host: each of them calls
// [Audit] or [Apply] and only prints the result.
//
// # Where the values come from
//
// [Audit] lists the host's TCP connections through sock_diag netlink, as
// ss does, in every network namespace its processes are in, and finds the
// process that holds each socket by its inode in /proc/PID/fd. sock_diag
// shows only a socket's timer: whether a keepalive timer is pending, when
// it fires and how many probes are out, never the configured idle time,
// interval, count or user timeout. Audit reads those from the socket
// itself, by one of two methods ([Method]):
//
//   - [MethodBPF]: a BPF TCP iterator, loaded for the audit and closed
//     after it, walks the sockets of each namespace inside the kernel and
//     reads each one's values with bpf_getsockopt, with the cgroup the
//     socket belongs to and the record a policy of keepalive enforce left
//     on it (package enforce). No process is ptraced: a process of another
//     user, or in another container, is read exactly. It needs CAP_BPF and
//     CAP_PERFMON (or CAP_SYS_ADMIN), and Linux 6.1 or later, whose
//     bpf_getsockopt reads the keepalive options.
//   - [MethodPidfd]: each socket is duplicated into this process with
//     pidfd_open and pidfd_getfd (Linux 5.6 and later), read with
//     getsockopt, and closed. It needs ptrace access to the process.
//
// By default ([MethodAuto]) Audit uses the BPF iterator where the kernel
// and its capabilities allow, and duplicates with pidfd_getfd the sockets
// the iterator could not read, or all of them when it cannot run;
// [Report.BPFError] says why, and [Conn.Method] which method read each
// connection. [Conn.Source] says where a connection's values come from:
// [SourceSocket] when they were read from the socket, [SourceKernel] when
// only the timer could be seen.
//
// [Apply] changes a running process's sockets by the same two methods: a
// BPF TCP iterator that changes only the sockets selected, by their inode
// numbers in a map, or each socket duplicated with pidfd_getfd and
// changed with the library's Set. Either way it sets the fields a
// [Change] names, leaves the others as the socket has them, changes each
// socket whole or not at all, and reads the values back. It never touches
// a socket that sock_diag does not list as a TCP socket of the process.
//
// # Policies
//
// A connection that a policy of keepalive enforce set carries a record
// of it: [Conn.SetBy] names the policy's cgroup, how the policy reached
// the connection (dialled, accepted, existing), which options it set, and
// whether the policy is still in force. [Report.Policies] gives each
// policy in force with its counters and how many of the audited
// connections of its cgroup carry it ([Coverage]).
//
// # Verdicts
//
// What an operator knows about a path, its middleboxes' idle timeout and
// how soon a vanished peer must be noticed, is a [Criteria]. Each connection
// gets a [Verdict] per question and an overall one, which the exporter uses
// as a label: [OK], [AtRisk] (a middlebox with this idle timeout forgets the
// flow before the first probe), [SlowDetect] (a vanished peer is noticed
// later than wanted), [Off] (keepalive is off) and [Unknown] (the values
// could not be read).
//
// # Permissions
//
// Listing a process's descriptors (/proc/PID/fd), which both methods need
// to find a socket's process, needs ptrace read access to it: the caller
// must run as the user that owns the process, or have CAP_SYS_PTRACE.
// Duplicating a descriptor with pidfd_getfd needs ptrace attach access,
// which Yama's kernel.yama.ptrace_scope may restrict further; the BPF
// iterator needs none. Without read access Audit still lists the
// connection, with the owner unknown, and with its values where the BPF
// iterator read them, else as the kernel reports them; Apply fails with a
// [*PermissionError] that says what is missing, and changes nothing.
//
// # Network namespaces
//
// sock_diag and a TCP iterator each list the sockets of one network
// namespace. Audit lists the caller's and those of every process it may
// inspect, each once ([Report.Namespaces]), so that a connection in a
// container is found too; with [Filter.PID] set it lists the namespace of
// that process only. Entering another namespace needs CAP_SYS_ADMIN;
// without it, Audit names the namespaces it could not list.
//
// # Cost
//
// An audit makes two sock_diag dumps (IPv4, IPv6) per namespace, reads
// the link of every descriptor of the processes it searches, as ss -p
// does, and stops searching once every socket has its owner. Through the
// BPF iterator, reading the values of every socket of a namespace is one
// program load and a few reads of its output, whatever the number of
// sockets; through pidfd_getfd, reading one socket's values takes eight
// system calls: pidfd_getfd, fstat (the duplicate must still be the
// socket listed), five getsockopt and close. It starts no goroutines but,
// for each namespace other than its own, one that enters it.
// BenchmarkAudit compares the two methods with ss -tnoip on a host with
// 100,000 connections.
//
// The package is implemented on Linux only; elsewhere Audit and Apply
// return an error wrapping [errors.ErrUnsupported].
package audit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// Criteria is what an operator knows about the paths of the connections:
// how long their middleboxes keep an idle flow and how soon a vanished peer
// must be noticed. The zero Criteria asks nothing: a connection's overall
// verdict then only says whether keepalive is on.
type Criteria struct {
	// IdleTimeout is how long the path's firewalls, NATs or load balancers
	// keep a flow that carries no packets (AWS NLB 350s, Azure Load
	// Balancer 4 minutes, GCP Cloud NAT 20 minutes). A connection whose
	// first keepalive probe goes out at or after it (Idle >= IdleTimeout),
	// or that has keepalive off, is [AtRisk]: if it goes idle, the
	// middlebox forgets it. Zero asks no such question.
	IdleTimeout time.Duration

	// Detect is how soon a peer that has vanished must be noticed on an
	// idle connection. A connection whose worst-case detection time
	// ([Conn.DetectionTime]) is longer, or that has keepalive off, is
	// [SlowDetect]. Zero asks no such question.
	Detect time.Duration
}

// Filter selects connections. The zero Filter selects every connection.
type Filter struct {
	// PID selects the connections that process holds, in its network
	// namespace. Zero selects connections of every process, and those no
	// process could be found for, in the caller's network namespace.
	PID int

	// Port selects connections whose local or remote port is Port. Zero
	// selects any port.
	Port uint16

	// Remote selects connections whose remote address is within it. An
	// IPv4 prefix also matches IPv4-mapped IPv6 addresses, which are
	// reported unmapped. The zero Prefix, which is not valid, selects any
	// address.
	Remote netip.Prefix
}

// Match reports whether f selects c. It compares c.PID with f.PID, so for
// connections whose owner is unknown (PID zero) only a Filter with PID zero
// matches.
func (f Filter) Match(c *Conn) bool {
	if f.PID != 0 && c.PID != f.PID {
		return false
	}
	return f.matchAddrs(c.Local, c.Remote)
}

// matchAddrs applies the port and remote filters, which sock_diag's answer
// alone can decide.
func (f Filter) matchAddrs(local, remote netip.AddrPort) bool {
	if f.Port != 0 && local.Port() != f.Port && remote.Port() != f.Port {
		return false
	}
	if f.Remote.IsValid() && !f.Remote.Contains(remote.Addr()) {
		return false
	}
	return true
}

// Options configures [Audit]. The zero Options audits every connection,
// reads values from every socket the caller may read, and asks no
// questions.
type Options struct {
	// Criteria are the questions each connection's verdicts answer.
	Criteria

	// Filter selects the connections to audit.
	Filter Filter

	// KernelOnly skips reading values from sockets: every connection's
	// Source is then at most [SourceKernel], as for a caller without
	// permission, and the audit costs about what ss -tnp does. False reads
	// them where permitted.
	KernelOnly bool

	// Method says how values are read from the sockets. The zero Method,
	// MethodAuto, uses the BPF iterator where it can and pidfd_getfd
	// where it cannot.
	Method Method

	// BPFFS is the directory where bpffs is mounted, under which the
	// policies of keepalive enforce are pinned (in keepalive/), so that
	// each connection a policy set is attributed to it. Empty means
	// /sys/fs/bpf. Audit never mounts bpffs: where none is mounted at
	// /sys/fs/bpf, no policy is in force; a directory given that is not a
	// mounted bpffs fails the audit before it starts.
	BPFFS string

	// Progress, if not nil, is called on the goroutine that called Audit
	// as each stage starts and ends and every few thousand items in
	// between, so that a command can draw progress. It must not block.
	Progress func(Progress)
}

// Stage is a step of an audit, reported in [Progress].
type Stage uint8

const (
	// Listing is sock_diag's dump of the namespace's TCP sockets.
	Listing Stage = iota
	// Owners is the search of /proc/PID/fd for the processes that hold
	// them.
	Owners
	// Reading is reading each socket's values, through the BPF iterator
	// or pidfd_getfd.
	Reading
)

var stageNames = [...]string{Listing: "listing sockets", Owners: "finding owners", Reading: "reading values"}

// String returns the stage in words: "listing sockets", "finding owners",
// "reading values".
func (s Stage) String() string {
	if int(s) < len(stageNames) {
		return stageNames[s]
	}
	return fmt.Sprintf("Stage(%d)", s)
}

// Progress is how far an audit has come.
type Progress struct {
	// Stage is the step under way.
	Stage Stage
	// Done is how many items of the stage are done: sockets listed,
	// processes searched or sockets read.
	Done int
	// Total is how many items the stage has; zero when not yet known.
	Total int
}

// Report is the result of an [Audit].
type Report struct {
	// Conns holds the connections, grouped by process: ordered by PID,
	// connections with no known process (PID zero) last, then by FD, then
	// by addresses.
	Conns []Conn

	// Unreadable lists the processes whose descriptors the caller had no
	// permission to list, in pid order, each with its pid, command and
	// why: the connections they hold are reported with PID zero. It is
	// empty when every connection's owner was found (the processes not
	// searched hold none of them), and leaves out kernel threads, which
	// hold no descriptors.
	Unreadable []*PermissionError

	// Namespaces are the network namespaces listed, or that could not be
	// (each with why), the caller's first.
	Namespaces []Namespace

	// BPFError is why the values were not read through the BPF iterator,
	// naming what is missing (a capability, or what the kernel lacks),
	// when the Method was MethodAuto and it could not run: the values were
	// then read with pidfd_getfd. Nil when the iterator ran, when Method
	// was MethodPidfd, and with KernelOnly.
	BPFError error

	// Policies holds the policies of keepalive enforce in force, in the
	// order of their cgroups' ids, each with how many of Conns carry it.
	// Empty when there is none, and with KernelOnly.
	Policies []Coverage

	// PoliciesErr is why the policies in force could not be read (bpffs
	// may not be read without root); nil when they were, or when none is
	// pinned.
	PoliciesErr error
}

// Namespace is a network namespace that an audit listed, or tried to.
type Namespace struct {
	// Inode is the namespace's inode number, the N of net:[N] in
	// /proc/PID/ns/net.
	Inode uint64
	// PID is a process in it, by which it was found; zero for the
	// caller's own.
	PID int
	// Err is why its connections could not be listed (entering another
	// namespace needs CAP_SYS_ADMIN); nil when they were.
	Err error
}

// Method is how values are read from, or set on, the sockets of other
// processes.
type Method uint8

const (
	// MethodAuto uses the BPF iterator where the kernel and the caller's
	// capabilities allow, and pidfd_getfd for the sockets it could not
	// reach. As a Conn's Method, it means that no value was read.
	MethodAuto Method = iota
	// MethodBPF uses a BPF TCP iterator only: no process is ptraced. It
	// needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN, and Linux 6.1 or
	// later.
	MethodBPF
	// MethodPidfd duplicates each socket with pidfd_getfd only, which
	// needs ptrace attach access to the process.
	MethodPidfd
)

var methodNames = [...]string{MethodAuto: "auto", MethodBPF: "bpf", MethodPidfd: "pidfd"}

// String returns "auto", "bpf" or "pidfd".
func (m Method) String() string {
	if int(m) < len(methodNames) {
		return methodNames[m]
	}
	return fmt.Sprintf("Method(%d)", m)
}

// MarshalText implements [encoding.TextMarshaler] with String.
func (m Method) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements [encoding.TextUnmarshaler] with ParseMethod.
func (m *Method) UnmarshalText(b []byte) error {
	v, err := ParseMethod(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMethod parses "auto", "bpf" or "pidfd".
func ParseMethod(s string) (Method, error) {
	for i, n := range methodNames {
		if s == n {
			return Method(i), nil
		}
	}
	return 0, fmt.Errorf("audit: the method must be auto, bpf or pidfd, not %q", s)
}

// Audit lists the TCP connections that o.Filter selects, with the process
// that holds each, the keepalive values in force and the verdicts against
// o.Criteria. Connections in states LISTEN, SYN-RECV, TIME-WAIT and CLOSE
// are left out: they are not connections a process holds open.
//
// A connection whose values cannot be read (no permission, the process or
// descriptor gone) is reported all the same, with what the kernel shows and
// the reason in [Conn.Err]; Audit fails only when the sockets cannot be
// listed, when o.Filter.PID names a process the caller may not inspect
// (a [*PermissionError]), or when ctx is done. It closes every descriptor
// it opened before it returns, also on cancellation.
func Audit(ctx context.Context, o Options) (*Report, error) {
	if o.Criteria.IdleTimeout < 0 || o.Criteria.Detect < 0 {
		return nil, fmt.Errorf("audit: negative criteria: idle timeout %v, detect %v", o.Criteria.IdleTimeout, o.Criteria.Detect)
	}
	if o.Filter.PID < 0 {
		return nil, fmt.Errorf("audit: negative pid %d", o.Filter.PID)
	}
	if o.Method > MethodPidfd {
		return nil, fmt.Errorf("audit: unknown %v: want MethodAuto, MethodBPF or MethodPidfd", o.Method)
	}
	return audit(ctx, o)
}

// Fields is a set of the fields of a [keepalive.Config], for [Change]:
// the bitwise or of the Field constants.
type Fields uint8

// The fields of a Config that a [Change] may name.
const (
	// FieldKeepAlive is SO_KEEPALIVE: on, or off when Config.Off is set.
	FieldKeepAlive Fields = 1 << iota
	// FieldIdle is Config.Idle (TCP_KEEPIDLE).
	FieldIdle
	// FieldInterval is Config.Interval (TCP_KEEPINTVL).
	FieldInterval
	// FieldCount is Config.Count (TCP_KEEPCNT).
	FieldCount
	// FieldUserTimeout is Config.UserTimeout (TCP_USER_TIMEOUT).
	FieldUserTimeout

	// AllFields names every field: the whole Config, as [keepalive.Set]
	// applies it.
	AllFields = FieldKeepAlive | FieldIdle | FieldInterval | FieldCount | FieldUserTimeout
)

// Change is what [Apply] sets on each socket of a running process: the
// fields it names, to their values in Config. A field it does not name is
// left as each socket has it.
type Change struct {
	// Config holds the values of the fields that Fields names, with the
	// meaning they have in [keepalive.Set]: a zero Idle, Interval or Count
	// puts the system default back, a zero UserTimeout removes the user
	// timeout, and Off turns keepalive off (with FieldKeepAlive). The fields
	// Fields does not name must be zero (Off false).
	Config keepalive.Config

	// Fields names the fields of Config to set. Zero names none, which
	// Apply refuses.
	Fields Fields

	// Method says how the change reaches the sockets. The zero Method,
	// MethodAuto, uses the BPF iterator where it can and pidfd_getfd
	// where it cannot.
	Method Method
}

// fieldNames are the names of the Fields in errors, in the order of the
// constants.
var fieldNames = [...]string{"keepalive (Off)", "Idle", "Interval", "Count", "UserTimeout"}

// String lists the fields by the keys of the Config's text form, with
// "keepalive" for SO_KEEPALIVE: "keepalive,idle". The empty set is "none".
func (f Fields) String() string { return bpfsock.Options(f).String() }

// check refuses a Change that names no field, or that holds a value in a
// field it does not name; then validates its Config.
func (ch Change) check() error {
	if ch.Fields == 0 {
		return errors.New("audit: the change names no field: nothing to set")
	}
	if ch.Fields&^AllFields != 0 {
		return fmt.Errorf("audit: the change names unknown fields %#x", uint8(ch.Fields&^AllFields))
	}
	if ch.Method > MethodPidfd {
		return fmt.Errorf("audit: unknown %v: want MethodAuto, MethodBPF or MethodPidfd", ch.Method)
	}
	c := ch.Config
	for i, set := range [...]bool{c.Off, c.Idle != 0, c.Interval != 0, c.Count != 0, c.UserTimeout != 0} {
		if set && ch.Fields&(1<<i) == 0 {
			return fmt.Errorf("audit: the change's Config sets %s, which its Fields do not name", fieldNames[i])
		}
	}
	return c.Validate()
}

// on returns the Config to set on a socket that holds have: ch's named
// fields, and have's values for the others. A value of have that is the
// system default in sys is given as zero, which keepalive.Set leaves as it
// is, so that a default outside the range Validate accepts (a sysctl may
// exceed the socket option's limit) still leaves the field untouched.
func (ch Change) on(have, sys keepalive.Config) keepalive.Config {
	c := ch.Config
	if ch.Fields&FieldKeepAlive == 0 {
		c.Off = have.Off
	}
	keep := func(f Fields, dst *time.Duration, v, def time.Duration) {
		if ch.Fields&f == 0 && v != def {
			*dst = v
		}
	}
	keep(FieldIdle, &c.Idle, have.Idle, sys.Idle)
	keep(FieldInterval, &c.Interval, have.Interval, sys.Interval)
	if ch.Fields&FieldCount == 0 && have.Count != sys.Count {
		c.Count = have.Count
	}
	if ch.Fields&FieldUserTimeout == 0 {
		c.UserTimeout = have.UserTimeout
	}
	return c
}

// Result is what [Apply] did to one socket.
type Result struct {
	// Before is the connection as read before the change was set.
	Before Conn

	// After is the connection as read back after the change was set: its
	// Source is [SourceSocket] and its values are those in force, the
	// fields the change names at their new values and the others as they
	// were. It is Before when Err is not nil.
	After Conn

	// Err is why the change could not be set or read back on this socket;
	// nil on success.
	Err error

	// BPFError is why the change was not made through the BPF iterator,
	// when the Change's Method was MethodAuto and it was made with
	// pidfd_getfd instead: a capability or a kernel feature missing, or
	// options the iterator could not read on this socket. Nil otherwise.
	BPFError error
}

// Apply sets ch on every TCP connection that process pid holds and f
// selects, without restarting the process, and reads each back. f.PID must
// be zero or pid.
//
// Only the fields ch names change: each socket keeps its own values for the
// others, so that a process's own settings (a user timeout it chose, or
// none) stay as they are unless asked. A named Idle, Interval or Count of
// zero puts the system default back, a named UserTimeout of zero removes
// the user timeout, and a named keepalive turns SO_KEEPALIVE on, or off
// with ch.Config.Off.
// The change is checked first: an invalid one changes nothing. On each
// socket it is made as [keepalive.Set] makes it, whole or not at all: a
// socket that refuses one field keeps the values it had.
//
// The process's own descriptors are never used. Through the BPF iterator
// (ch.Method MethodBPF, or MethodAuto where it can run), the sockets are
// selected by their inode numbers, as sock_diag and /proc/PID/fd list
// them, and the iterator changes those and no other: a socket closed
// meanwhile is not found, and one opened on the same descriptor since has
// another inode. Each is read, changed and read again inside the kernel,
// and only the named options are written: an unnamed field that holds the
// system default still follows the sysctl after. Through
// pidfd_getfd (MethodPidfd, or where the iterator cannot run or could not
// read a socket's options), each socket is duplicated into this process,
// changed with keepalive.Set, read back and closed; a descriptor is
// duplicated only when sock_diag lists its socket as TCP, and changed only
// when the duplicate is still that socket. [Result.After]'s Method says
// which was used. Either way a named zero field is set to the default of
// the process's network namespace.
//
// Apply fails with a [*PermissionError] when the caller may not inspect
// the process, before any socket is changed; with MethodBPF, it fails when
// the iterator cannot run, naming what is missing. The results are in the
// order of the process's descriptors; a socket that could not be changed
// has the reason in [Result.Err], and the others are changed all the same.
// Apply checks ctx between sockets, and closes every descriptor it opened
// before it returns.
func Apply(ctx context.Context, pid int, f Filter, ch Change) ([]Result, error) {
	if err := ch.check(); err != nil {
		return nil, err
	}
	if pid <= 0 {
		return nil, fmt.Errorf("audit: apply needs the pid of a process, not %d", pid)
	}
	if f.PID != 0 && f.PID != pid {
		return nil, fmt.Errorf("audit: filter selects pid %d, apply was asked for pid %d", f.PID, pid)
	}
	f.PID = pid
	return apply(ctx, f, ch)
}
