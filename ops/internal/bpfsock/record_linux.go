package bpfsock

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/sys/unix"
)

// How says how a policy reached a socket.
type How uint32

const (
	Dialled  How = 1 // its sock_ops program, as the connection was established by connect
	Accepted How = 2 // its sock_ops program, as the connection was established by a listener
	Existing How = 3 // its iterator, on a connection established before the policy
)

func (h How) String() string {
	switch h {
	case Dialled:
		return "dialled"
	case Accepted:
		return "accepted"
	case Existing:
		return "existing"
	}
	return fmt.Sprintf("How(%d)", uint32(h))
}

// Record is what the programs keep for one socket in the shared
// socket-local storage map, [Shared.Sockets]. Its layout is the map's
// value: the programs read and write it at the offsets below.
type Record struct {
	// Cgroup is the id of the cgroup whose policy last set the socket's
	// options; zero when none has.
	Cgroup uint64
	// Policy is the ID of that policy: every enforce makes a new one, so a
	// policy that replaced another on the same cgroup has another ID.
	Policy uint64
	// Set is the options that policy set, and that the kernel accepted.
	Set Options
	// Own is the options the process set itself, as the setsockopt program
	// of a policy where the program wins saw it (before or after the
	// connection was established, or on the listening socket it was
	// accepted from); zero where no such policy was in force.
	Own Options
	// How is how the policy reached the socket.
	How How
	// Left is the options the policy would have set but left to the
	// process's own values (a policy where the program wins).
	Left Options
}

// Offsets of Record's fields, for the programs.
const (
	recCgroup = 0
	recPolicy = 8
	recSet    = 16
	recOwn    = 20
	recHow    = 24
	recLeft   = 28
	recordLen = 32
)

// recordBTF describes Record to the kernel, which wants the value type of
// a socket-local storage map.
func recordBTF() (key, value btf.Type) {
	u64 := &btf.Int{Name: "__u64", Size: 8}
	u32 := &btf.Int{Name: "__u32", Size: 4}
	return &btf.Int{Name: "int", Size: 4, Encoding: btf.Signed}, &btf.Struct{
		Name: "keepalive_sk",
		Size: recordLen,
		Members: []btf.Member{
			{Name: "cgroup", Type: u64, Offset: recCgroup * 8},
			{Name: "policy", Type: u64, Offset: recPolicy * 8},
			{Name: "set", Type: u32, Offset: recSet * 8},
			{Name: "own", Type: u32, Offset: recOwn * 8},
			{Name: "how", Type: u32, Offset: recHow * 8},
			{Name: "left", Type: u32, Offset: recLeft * 8},
		},
	}
}

// Counter is an index into a policy's counts map: what its programs have
// done since it was put in force.
type Counter int

const (
	CountDialled  Counter = iota // dialled connections set by its sock_ops program
	CountAccepted                // accepted connections set by its sock_ops program
	CountExisting                // connections set by its iterator
	CountKept                    // setsockopt calls of a process that the policy kept from changing an option it sets
	CountYielded                 // connections on which it left an option to the process's own value
	CountFailed                  // bpf_setsockopt calls the kernel refused
	CountNearer                  // connections it left to the policy of a cgroup nearer to the socket
	numCounters
)

// Counts is a policy's counters, indexed by [Counter].
type Counts [numCounters]uint64

// countsLen is the size of the counts map's value.
const countsLen = 8 * int(numCounters)

// The shared maps' names, as bpftool shows them; every object of the
// project is named with prefix, so that [ListObjects] finds them.
const (
	prefix         = "keepalive_"
	socketsName    = prefix + "socks"
	policiesName   = prefix + "pols"
	countsName     = prefix + "count"
	infoName       = prefix + "info"
	sockOpsName    = prefix + "ops"
	setsockoptName = prefix + "sso"
	iterName       = prefix + "iter"
	dumpName       = prefix + "dump"
	setName        = prefix + "set"
	selName        = prefix + "sel"
)

// maxPolicies bounds the policies in force on a host at once.
const maxPolicies = 65536

// bpfFClone makes socket-local storage follow a listening socket to the
// sockets accepted from it (linux/bpf.h BPF_F_CLONE).
const bpfFClone = 1 << 9

// Shared is the maps every policy's programs use.
type Shared struct {
	// Sockets is the socket-local storage map of [Record]s.
	Sockets *ebpf.Map
	// Policies maps the id of each cgroup with a policy in force (a
	// uint64) to that policy's ID (a uint64). The programs read it to
	// know whether a policy that set a socket is still in force.
	Policies *ebpf.Map
}

// NewShared creates the shared maps, unpinned.
func NewShared() (*Shared, error) {
	key, value := recordBTF()
	sockets, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:      socketsName,
		Type:      ebpf.SkStorage,
		KeySize:   4,
		ValueSize: recordLen,
		Flags:     unix.BPF_F_NO_PREALLOC | bpfFClone,
		Key:       key,
		Value:     value,
	})
	if err != nil {
		return nil, fmt.Errorf("bpfsock: creating the socket storage map: %w", err)
	}
	policies, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       policiesName,
		Type:       ebpf.Hash,
		KeySize:    8,
		ValueSize:  8,
		MaxEntries: maxPolicies,
		Flags:      unix.BPF_F_NO_PREALLOC,
	})
	if err != nil {
		sockets.Close()
		return nil, fmt.Errorf("bpfsock: creating the policies map: %w", err)
	}
	return &Shared{Sockets: sockets, Policies: policies}, nil
}

// Close closes the maps' descriptors; pinned maps stay.
func (s *Shared) Close() {
	s.Sockets.Close()
	s.Policies.Close()
}

// Lookup returns the record of the socket behind fd, a descriptor of this
// process; ok is false when no program has kept one for it.
func (s *Shared) Lookup(fd int) (r Record, ok bool, err error) {
	err = s.Sockets.Lookup(uint32(fd), &r)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, fmt.Errorf("bpfsock: reading the record of socket %d: %w", fd, err)
	}
	return r, true, nil
}

// newCounts creates a policy's counts map.
func newCounts() (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       countsName,
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  uint32(countsLen),
		MaxEntries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("bpfsock: creating the counts map: %w", err)
	}
	return m, nil
}

// ReadCounts reads a policy's counts map.
func ReadCounts(m *ebpf.Map) (Counts, error) {
	var c Counts
	if err := m.Lookup(uint32(0), &c); err != nil {
		return c, fmt.Errorf("bpfsock: reading the counts: %w", err)
	}
	return c, nil
}

// newInfo creates a frozen map that holds b, a policy's description: no
// program reads it, and nothing may change it.
func newInfo(b []byte) (*ebpf.Map, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       infoName,
		Type:       ebpf.Array,
		KeySize:    4,
		ValueSize:  uint32(len(b)),
		MaxEntries: 1,
		Flags:      unix.BPF_F_RDONLY_PROG,
	})
	if err != nil {
		return nil, fmt.Errorf("bpfsock: creating the description map: %w", err)
	}
	if err := m.Put(uint32(0), b); err != nil {
		m.Close()
		return nil, fmt.Errorf("bpfsock: writing the description: %w", err)
	}
	if err := m.Freeze(); err != nil {
		m.Close()
		return nil, fmt.Errorf("bpfsock: freezing the description: %w", err)
	}
	return m, nil
}

// readInfo returns what newInfo wrote.
func readInfo(m *ebpf.Map) ([]byte, error) {
	b := make([]byte, m.ValueSize())
	if err := m.Lookup(uint32(0), &b); err != nil {
		return nil, fmt.Errorf("bpfsock: reading the description: %w", err)
	}
	return b, nil
}
