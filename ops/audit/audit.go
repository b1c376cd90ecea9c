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
// ss does, and finds the process that holds each socket by its inode in
// /proc/PID/fd. sock_diag shows only a socket's timer: whether a keepalive
// timer is pending, when it fires and how many probes are out, never the
// configured idle time, interval, count or user timeout. So Audit then
// duplicates each socket into its own process with pidfd_open and
// pidfd_getfd (Linux 5.6 and later), reads the values in force with
// getsockopt, and closes the duplicate. [Conn.Source] says which of the
// two a connection's values come from: [SourceSocket] when they were read
// from the socket, [SourceKernel] when only the timer could be seen.
//
// [Apply] changes a running process's sockets the same way: it duplicates
// each matching TCP socket, sets the fields a [Change] names on the
// duplicate (which is the same socket: the change is the process's),
// leaving the others as the socket has them, reads the values back and
// reports them. It never duplicates a descriptor that sock_diag does not
// list as a TCP socket.
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
// Listing a process's descriptors (/proc/PID/fd) needs ptrace read access
// to it, and duplicating them with pidfd_getfd ptrace attach access: the
// caller must run as the user that owns the process, or have
// CAP_SYS_PTRACE, and Yama's kernel.yama.ptrace_scope may restrict it
// further. Without it Audit still lists the connection, with the owner
// unknown and the values as the kernel reports them; Apply fails with a
// [*PermissionError] that says what is missing, and changes nothing.
//
// # Network namespaces
//
// sock_diag lists the sockets of one network namespace. Audit lists the
// caller's, as ss does; with [Filter.PID] set it lists the namespace of
// that process instead, so a process in a container is audited by its pid.
// Entering another namespace needs CAP_SYS_ADMIN.
//
// # Cost
//
// An audit makes two sock_diag dumps (IPv4, IPv6), reads the link of every
// descriptor of the processes it searches, as ss -p does, and stops
// searching once every socket has its owner. Reading one socket's values
// takes eight system calls: pidfd_getfd, fstat (the duplicate must still be
// the socket listed), five getsockopt and close. It starts no goroutines.
// BenchmarkAudit compares it with ss -tnoip on a host with 100,000
// connections.
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
	// Reading is reading each socket's values through pidfd_getfd.
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
}

// fieldNames are the names of the Fields in errors, in the order of the
// constants.
var fieldNames = [...]string{"keepalive (Off)", "Idle", "Interval", "Count", "UserTimeout"}

// check refuses a Change that names no field, or that holds a value in a
// field it does not name; then validates its Config.
func (ch Change) check() error {
	if ch.Fields == 0 {
		return errors.New("audit: the change names no field: nothing to set")
	}
	if ch.Fields&^AllFields != 0 {
		return fmt.Errorf("audit: the change names unknown fields %#x", uint8(ch.Fields&^AllFields))
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
// The process's own descriptors are never used: each socket is duplicated
// into this process with pidfd_getfd, changed, read back and closed. A
// descriptor is duplicated only when sock_diag lists its socket as TCP,
// and changed only when the duplicate is still that socket.
//
// Apply fails with a [*PermissionError] when the caller may not inspect
// the process, before any socket is changed. The results are in the order
// of the process's descriptors; a socket that could not be changed has the
// reason in [Result.Err], and the others are changed all the same. Apply checks ctx
// between sockets, and closes every descriptor it opened before it
// returns.
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
