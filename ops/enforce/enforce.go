// Package enforce puts a keepalive policy on a cgroup: every TCP connection
// that a process in the cgroup establishes from then on, dialled or
// accepted, gets a [keepalive.Config], and so do the connections its
// processes already hold. Nothing is restarted and no process is traced:
// BPF programs do it inside the kernel (Linux).
//
// # How
//
// A policy is three BPF programs, built with github.com/cilium/ebpf's asm
// package (no C toolchain), and two maps of its own:
//
//   - a sock_ops program, attached to the cgroup, sets the options with
//     bpf_setsockopt as each connection is established
//     (BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB for a dialled one,
//     BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB for an accepted one);
//   - a cgroup setsockopt program, attached to the cgroup, sees the
//     setsockopt calls of the cgroup's processes (see [Wins]);
//   - a TCP iterator program, run once by [Enforce] in each network
//     namespace that a process of the cgroup is in, sets the connections
//     that were established before the policy.
//
// The two attached programs are held by bpf_links pinned in bpffs, so the
// policy outlives the process that made it, under one directory:
// /sys/fs/bpf/keepalive/cgroup-ID, named for the cgroup's id, beside the
// maps every policy shares (a socket-local storage map in which the
// programs note, per socket, which policy set it and what the process set
// itself, and the list of policies in force). [List] reads them back and
// [Remove] ends a policy. bpftool prog show, link show and cgroup tree
// show them too: every object is named keepalive_...
//
// # Which connections
//
// A connection belongs to the cgroup of the process that made its socket,
// at the time it made it; for an accepted connection, the process that
// made the listening socket. Moving a process to another cgroup later does
// not move the sockets it has. This is how the kernel runs cgroup programs,
// and the iterator matches a socket to a policy the same way: by the
// socket's own cgroup.
//
// A policy covers its cgroup and every cgroup below it: the kernel runs a
// cgroup's programs for the sockets of its descendants too (a bpf_link
// attaches with BPF_F_ALLOW_MULTI semantics, so descendants may have
// programs of their own, which run first). Where a cgroup and one of its
// ancestors both have a policy, the nearer one to the socket wins, whole:
// the ancestor's policy does not fill in what the nearer one leaves to the
// system. The iterator looks at most 31 levels below the policy's cgroup.
//
// A [Filter] narrows a policy to some flows: by the remote address (IPv4
// and IPv6 prefixes; an IPv4 prefix also matches IPv4-mapped IPv6
// addresses) and by port (the local or the remote one, so that a
// server's port matches both the connections it accepts and those dialled
// to it).
//
// # The Config
//
// The Config means what it means everywhere else in this project, except
// that nothing is written for a zero field: Idle, Interval, Count and
// UserTimeout set TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and
// TCP_USER_TIMEOUT when they are not zero, and a zero one is left alone,
// so the socket keeps whatever it had (the system default, or the
// process's own value). SO_KEEPALIVE is always set: on, or off with
// Config.Off. The Config is validated before anything is loaded.
//
// # When a policy ends
//
// [Remove] detaches the programs: connections established from then on
// are not touched. The connections the policy set keep the values it set,
// as a socket keeps any option until it is set again or closed: a
// policy's values are not taken back. Replacing a policy ([Enforce] on a
// cgroup that has one) swaps each program atomically (BPF_LINK_UPDATE: a
// connection meets the old program or the new one, never none and never
// both), and the new policy's iterator sets the connections already
// established to the new values.
//
// # Permissions and kernels
//
// Enforce needs CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON, or CAP_SYS_ADMIN,
// which also lets it enter the network namespaces of the cgroup's
// processes (containers) and mount bpffs. It needs a cgroup v2 directory,
// the kernel's BTF, and what cilium/ebpf's features package and the BTF
// say the kernel has: sock_ops and cgroup setsockopt programs, socket-local
// storage, bpf_skc_to_tcp_sock (Linux 5.10) and TCP iterators that may call
// bpf_setsockopt (Linux 5.15). Each error names what is missing, and
// leaves nothing attached or pinned.
//
// Note that on other systems than Linux every function fails with an
// error wrapping [errors.ErrUnsupported].
package enforce

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// Options says what policy [Enforce] puts where.
type Options struct {
	// Cgroup is the path of the cgroup v2 directory the policy goes on,
	// such as /sys/fs/cgroup/system.slice/postgresql.service. It must not
	// be empty.
	Cgroup string

	// Config is what the policy sets on each connection. Its zero fields
	// leave the socket's own values alone; SO_KEEPALIVE is always set (on,
	// or off when Off is set). The zero Config turns keepalive on and
	// changes nothing else.
	Config keepalive.Config

	// Filter chooses the connections. The zero Filter chooses all.
	Filter Filter

	// Wins says whose values stay when a process sets an option the
	// policy sets. The zero Wins is PolicyWins.
	Wins Wins

	// BPFFS is the directory where bpffs is mounted, under which the
	// policy is pinned (in keepalive/). Empty means /sys/fs/bpf, where
	// Enforce mounts bpffs if nothing is mounted there.
	BPFFS string
}

// Filter chooses the connections a policy sets. The zero Filter chooses
// all of them.
type Filter struct {
	// Remote holds prefixes: a connection is chosen when its remote
	// address is within one of them. An IPv4 prefix also matches
	// IPv4-mapped IPv6 addresses; ::/0 matches every address. Empty
	// chooses any remote address.
	Remote []netip.Prefix

	// Ports holds ports: a connection is chosen when its local or its
	// remote port is one of them. Empty chooses any port. Zero is not a
	// port.
	Ports []uint16
}

// String describes the filter: "all flows", or "remote 10.0.0.0/8 or
// fd00::/8, port 5432".
func (f Filter) String() string {
	var parts []string
	if len(f.Remote) > 0 {
		s := make([]string, len(f.Remote))
		for i, p := range f.Remote {
			s[i] = p.String()
		}
		parts = append(parts, "remote "+strings.Join(s, " or "))
	}
	if len(f.Ports) > 0 {
		s := make([]string, len(f.Ports))
		for i, p := range f.Ports {
			s[i] = strconv.Itoa(int(p))
		}
		parts = append(parts, "port "+strings.Join(s, " or "))
	}
	if len(parts) == 0 {
		return "all flows"
	}
	return strings.Join(parts, ", ")
}

// maxFilter bounds the prefixes and the ports of a Filter, each: every
// one adds instructions to the programs.
const maxFilter = 64

// validate checks f, and returns it with prefixes masked and duplicates
// removed.
func (f Filter) validate() (Filter, error) {
	if len(f.Remote) > maxFilter || len(f.Ports) > maxFilter {
		return f, fmt.Errorf("enforce: a filter holds at most %d prefixes and %d ports, not %d and %d", maxFilter, maxFilter, len(f.Remote), len(f.Ports))
	}
	var out Filter
	for _, p := range f.Remote {
		if !p.IsValid() || p.Addr().Zone() != "" {
			return f, fmt.Errorf("enforce: invalid remote prefix %q: want an address or a prefix such as 10.0.0.0/8 or fd00::/8, without a zone", p)
		}
		p = p.Masked()
		if !slices.Contains(out.Remote, p) {
			out.Remote = append(out.Remote, p)
		}
	}
	for _, port := range f.Ports {
		if port == 0 {
			return f, fmt.Errorf("enforce: invalid port 0: want a port from 1 to 65535")
		}
		if !slices.Contains(out.Ports, port) {
			out.Ports = append(out.Ports, port)
		}
	}
	return out, nil
}

// Wins says whose value stays when a process sets, with setsockopt, an
// option its cgroup's policy sets.
type Wins uint8

const (
	// PolicyWins keeps the policy's values: the policy's setsockopt program
	// swallows a process's setsockopt of an option the policy sets (not
	// zero in its Config, and SO_KEEPALIVE), on a connection the policy
	// set: the kernel skips the call, which returns 0, and the socket
	// keeps the policy's value. Options the policy leaves zero are the
	// process's to set. A process that sets options before connecting
	// meets the policy's values as the connection is established. So Go's
	// net.Dialer, which sets 15s / 15s / 9 after connecting, keeps the
	// policy's values for the fields it names and Go's for the others.
	PolicyWins Wins = iota

	// ProgramWins keeps the process's values: the policy sets only the
	// options the process has not set itself. Its setsockopt program
	// notes each keepalive option a process of the cgroup sets on a TCP
	// socket, before or after connecting, and on a listening socket for
	// the connections accepted from it, and lets the call through; the
	// sock_ops program and the iterator then leave those options alone.
	// On a connection established before the policy, an option counts as
	// the process's when the socket holds a value of its own for it
	// (TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT not zero,
	// SO_KEEPALIVE on) that no policy set. So Go's net.Dialer keeps its
	// 15s / 15s / 9, and gets the policy's user timeout.
	ProgramWins
)

// String returns "policy" or "program".
func (w Wins) String() string {
	switch w {
	case PolicyWins:
		return "policy"
	case ProgramWins:
		return "program"
	}
	return fmt.Sprintf("Wins(%d)", uint8(w))
}

// ParseWins parses "policy" or "program".
func ParseWins(s string) (Wins, error) {
	switch s {
	case "policy":
		return PolicyWins, nil
	case "program":
		return ProgramWins, nil
	}
	return 0, fmt.Errorf("enforce: who wins must be policy or program, not %q", s)
}

// Fields is a set of the options a policy sets, one bit each.
type Fields uint8

const (
	FieldKeepAlive   Fields = 1 << iota // SO_KEEPALIVE
	FieldIdle                           // TCP_KEEPIDLE
	FieldInterval                       // TCP_KEEPINTVL
	FieldCount                          // TCP_KEEPCNT
	FieldUserTimeout                    // TCP_USER_TIMEOUT
)

// String lists the fields by the keys of the Config's text form, with
// "keepalive" for SO_KEEPALIVE: "keepalive,idle". The empty set is "none".
func (f Fields) String() string { return bpfsock.Options(f).String() }

// Policy is a policy in force, as [List] reads it back.
type Policy struct {
	// Cgroup is the cgroup's path as it was given to Enforce, made
	// absolute.
	Cgroup string
	// CgroupID is the cgroup's id (its inode number in cgroupfs).
	CgroupID uint64
	// Config, Filter and Wins are the policy's, as Enforce was given
	// them (the Filter's prefixes masked, duplicates removed).
	Config keepalive.Config
	Filter Filter
	Wins   Wins
	// Since is when the policy was put in force.
	Since time.Time
	// ID tells this policy from the others put on the same cgroup before
	// and after it: its programs write it, with CgroupID, in the record
	// they keep for each socket they set.
	ID uint64
	// Counts is what the policy's programs have done since.
	Counts Counts
	// Attached is false when the cgroup has been removed since: the
	// kernel then detaches the programs, and only the pins are left, for
	// Remove.
	Attached bool
	// Pins is the policy's directory in bpffs.
	Pins string
}

// Counts is what a policy's programs have done since it was put in force.
type Counts struct {
	// Dialled and Accepted count the connections its sock_ops program set
	// as they were established; Existing those its iterator set, which
	// were established before it.
	Dialled, Accepted, Existing uint64
	// Kept counts setsockopt calls of processes that it kept from changing
	// an option it sets (PolicyWins).
	Kept uint64
	// Yielded counts connections on which it left one or more options to
	// the process's own values (ProgramWins).
	Yielded uint64
	// Failed counts options that the kernel refused to set
	// (bpf_setsockopt returned an error); zero unless something is amiss.
	Failed uint64
	// Nearer counts connections it left to the policy of a cgroup nearer
	// to them.
	Nearer uint64
}

// Set is how many connections the policy set.
func (c Counts) Set() uint64 { return c.Dialled + c.Accepted + c.Existing }

// Result is what [Enforce] did.
type Result struct {
	// Policy is the policy now in force.
	Policy Policy
	// Replaced is the policy it replaced on the cgroup, as it was just
	// before; nil when the cgroup had none.
	Replaced *Policy
	// Existing holds the connections established before the policy that
	// its iterator set.
	Existing []Conn
	// Namespaces is how many network namespaces the iterator searched:
	// the caller's and those of the cgroup's processes.
	Namespaces int
}

// Conn is a connection that the iterator set.
type Conn struct {
	// Local and Remote are its addresses, IPv4-mapped ones unmapped.
	Local, Remote netip.AddrPort
	// Netns is the inode number of the connection's network namespace.
	Netns uint64
	// Set is the options the policy set on it; Left those it left to the
	// process's own values (ProgramWins).
	Set, Left Fields
}

// Objects are the project's BPF objects loaded in the kernel, by id: the
// programs and maps named keepalive_..., and the links of those programs.
// A host with no policy has none.
type Objects struct {
	// Programs, Maps and Links hold the ids, as bpftool shows them; empty
	// when there are none.
	Programs, Maps, Links []uint32
}

// Len is how many objects there are.
func (o Objects) Len() int { return len(o.Programs) + len(o.Maps) + len(o.Links) }

func (o Objects) String() string {
	return fmt.Sprintf("%d programs %v, %d maps %v, %d links %v", len(o.Programs), o.Programs, len(o.Maps), o.Maps, len(o.Links), o.Links)
}

// Enforce puts a policy on the cgroup o.Cgroup: o.Config on every TCP
// connection of o.Filter that its processes establish from now on, and on
// those they hold already, in every network namespace its processes are
// in; see the package documentation. A policy already on the cgroup is
// replaced, so that one stays.
//
// Everything is checked before anything is loaded: the Config
// ([keepalive.Config.Validate]; its error is returned as is), the filter,
// the cgroup (a cgroup v2 directory, else an error wrapping
// [ErrNotCgroup2]), the capabilities (an error wrapping os.ErrPermission
// that names those missing) and the kernel (an error wrapping
// errors.ErrUnsupported that names what it lacks). On any such error, and
// on any error while loading, attaching and pinning, nothing is left: no
// program, map, link or pin, and a policy that was to be replaced stays as
// it was. Concurrent calls, from any process, are serialised by a lock on
// the project's bpffs directory.
//
// Once the programs are attached, Enforce runs the iterator in each
// namespace. If that fails, the policy is in force all the same: Enforce
// returns the Result so far with the error.
func Enforce(ctx context.Context, o Options) (*Result, error) {
	return enforce(ctx, o)
}

// List returns the policies in force, read from the pins in bpffs (at
// bpffs, or /sys/fs/bpf when empty), in the order of their cgroups' ids.
// With no bpffs mounted, or no policy, it returns none.
func List(ctx context.Context, bpffs string) ([]Policy, error) {
	return list(ctx, bpffs)
}

// Remove ends the policy on the cgroup at path cgroup, and returns it as it
// was last. The cgroup may have been removed since: the policy is then
// found by the path it was given. It detaches the programs and removes the
// pins, and, when it was the last policy, the shared maps and the
// project's directory: no object of the project is left. The connections
// the policy set keep their values. It fails with an error wrapping
// os.ErrNotExist when the cgroup has no policy.
func Remove(ctx context.Context, bpffs, cgroup string) (*Policy, error) {
	return remove(ctx, bpffs, cgroup)
}

// LoadedObjects lists the project's BPF objects loaded in the kernel, as
// bpftool prog show, map show and link show would find them by name: those
// of the policies, not the iterators and maps that an audit or an apply
// (package audit) loads for the time it runs. It needs CAP_SYS_ADMIN.
func LoadedObjects() (Objects, error) {
	return loadedObjects()
}

// ErrNotCgroup2 is wrapped by the error of Enforce for a path that is not
// a cgroup v2 directory.
var ErrNotCgroup2 = errors.New("not a cgroup v2 directory")
