package bpfsock

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// Kernel holds the offsets, in bytes, of the fields of kernel structures
// that the programs read through BTF pointers: they differ between kernel
// builds, so they are read from the running kernel's BTF
// (/sys/kernel/btf/vmlinux) rather than compiled in.
type Kernel struct {
	// struct sock_common, which starts struct sock, which starts struct
	// tcp_sock.
	family, state          field // skc_family, skc_state
	daddr, rcvSaddr        field // skc_daddr, skc_rcv_saddr (IPv4, network order)
	dport, num             field // skc_dport (network order), skc_num (host order)
	v6Daddr, v6RcvSaddr    field // skc_v6_daddr, skc_v6_rcv_saddr
	cgroup                 field // sock.sk_cgrp_data.cgroup
	flags                  field // sock_common.skc_flags, in older kernels sock.sk_flags
	keepOpen               uint32
	keepTime, keepIntvl    field // tcp_sock.keepalive_time, keepalive_intvl
	keepProbes, userTimout field // tcp_sock.keepalive_probes, icsk_user_timeout

	// struct cgroup and what it points to.
	cgroupKN, cgroupParent, cssCgroup, kernfsID field

	// From a socket to its inode number, as /proc/PID/fd shows it:
	// sock.sk_socket, socket.file, file.f_inode, inode.i_ino.
	skSocket, socketFile, fileInode, inodeIno field

	// tcpIter reports whether the kernel has TCP iterators (its BTF has
	// their target, bpf_iter_tcp).
	tcpIter bool
}

// field is a field's offset and size in bytes.
type field struct {
	off  int16
	size int
}

// errNoBTF is wrapped by LoadKernel's error when the kernel has no BTF.
var errNoBTF = errors.New("the kernel has no BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)")

// LoadKernel reads the offsets the programs need from the running kernel's
// BTF, once per process. Its error names the structure or field the kernel
// lacks.
func LoadKernel() (*Kernel, error) { return loadKernelOnce() }

var loadKernelOnce = sync.OnceValues(loadKernel)

func loadKernel() (*Kernel, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("bpfsock: %w", errNoBTF)
		}
		return nil, fmt.Errorf("bpfsock: reading the kernel's BTF: %w", err)
	}
	r := resolver{spec: spec}
	k := &Kernel{
		family:       r.field("sock", "__sk_common", "skc_family"),
		state:        r.field("sock", "__sk_common", "skc_state"),
		daddr:        r.field("sock", "__sk_common", "skc_daddr"),
		rcvSaddr:     r.field("sock", "__sk_common", "skc_rcv_saddr"),
		dport:        r.field("sock", "__sk_common", "skc_dport"),
		num:          r.field("sock", "__sk_common", "skc_num"),
		v6Daddr:      r.field("sock", "__sk_common", "skc_v6_daddr"),
		v6RcvSaddr:   r.field("sock", "__sk_common", "skc_v6_rcv_saddr"),
		cgroup:       r.field("sock", "sk_cgrp_data", "cgroup"),
		flags:        r.either("sock", []string{"__sk_common", "skc_flags"}, []string{"sk_flags"}),
		keepOpen:     r.enum("sock_flags", "SOCK_KEEPOPEN"),
		keepTime:     r.field("tcp_sock", "keepalive_time"),
		keepIntvl:    r.field("tcp_sock", "keepalive_intvl"),
		keepProbes:   r.field("tcp_sock", "keepalive_probes"),
		userTimout:   r.field("tcp_sock", "inet_conn", "icsk_user_timeout"),
		cgroupKN:     r.field("cgroup", "kn"),
		cgroupParent: r.field("cgroup", "self", "parent"),
		cssCgroup:    r.field("cgroup_subsys_state", "cgroup"),
		kernfsID:     r.field("kernfs_node", "id"),
		skSocket:     r.field("sock", "sk_socket"),
		socketFile:   r.field("socket", "file"),
		fileInode:    r.field("file", "f_inode"),
		inodeIno:     r.field("inode", "i_ino"),
	}
	var iter *btf.Func
	k.tcpIter = spec.TypeByName("bpf_iter_tcp", &iter) == nil
	// A tcp_sock starts with its sock: the programs read both through one
	// pointer.
	if sk := r.field("tcp_sock", "inet_conn", "icsk_inet", "sk"); r.err == nil && sk.off != 0 {
		r.err = fmt.Errorf("struct tcp_sock does not start with its struct sock (offset %d)", sk.off)
	}
	if r.err != nil {
		return nil, fmt.Errorf("bpfsock: the kernel's BTF does not have what the programs read: %w", r.err)
	}
	for _, f := range []field{k.daddr, k.rcvSaddr, k.keepTime, k.keepIntvl, k.userTimout} {
		if f.size != 4 {
			return nil, fmt.Errorf("bpfsock: a field the programs read as 32 bits has %d bytes in this kernel", f.size)
		}
	}
	return k, nil
}

// resolver finds fields in the kernel's BTF and keeps the first error.
type resolver struct {
	spec *btf.Spec
	err  error
}

// field returns the offset and size of the field reached from struct
// typ through path, each step a member's name; anonymous structs and
// unions on the way are searched too.
func (r *resolver) field(typ string, path ...string) field {
	if r.err != nil {
		return field{}
	}
	var s *btf.Struct
	if err := r.spec.TypeByName(typ, &s); err != nil {
		r.err = fmt.Errorf("struct %s: %w", typ, err)
		return field{}
	}
	var t btf.Type = s
	off := 0
	for i, name := range path {
		m, moff, ok := member(t, name)
		if !ok {
			r.err = fmt.Errorf("struct %s has no field %s", typ, strings.Join(path[:i+1], "."))
			return field{}
		}
		if m.BitfieldSize != 0 {
			r.err = fmt.Errorf("struct %s's field %s is a bit field", typ, strings.Join(path[:i+1], "."))
			return field{}
		}
		off += moff
		t = btf.UnderlyingType(m.Type)
	}
	size, err := btf.Sizeof(t)
	if err != nil {
		r.err = fmt.Errorf("struct %s's field %s: %w", typ, strings.Join(path, "."), err)
		return field{}
	}
	if off > 1<<15-1 {
		r.err = fmt.Errorf("struct %s's field %s is at offset %d, beyond what one load reaches", typ, strings.Join(path, "."), off)
		return field{}
	}
	return field{off: int16(off), size: size}
}

// either returns the first of the fields of struct typ reached through
// paths that the kernel has: a field that moved between kernels.
func (r *resolver) either(typ string, paths ...[]string) field {
	if r.err != nil {
		return field{}
	}
	for i, path := range paths {
		f := r.field(typ, path...)
		if r.err == nil || i == len(paths)-1 {
			return f
		}
		r.err = nil
	}
	return field{}
}

// enum returns the value of enum typ's constant name.
func (r *resolver) enum(typ, name string) uint32 {
	if r.err != nil {
		return 0
	}
	var e *btf.Enum
	if err := r.spec.TypeByName(typ, &e); err != nil {
		r.err = fmt.Errorf("enum %s: %w", typ, err)
		return 0
	}
	for _, v := range e.Values {
		if v.Name == name {
			return uint32(v.Value)
		}
	}
	r.err = fmt.Errorf("enum %s has no %s", typ, name)
	return 0
}

// member finds member name of the struct or union t, searching anonymous
// members too, and returns it with its offset in bytes.
func member(t btf.Type, name string) (btf.Member, int, bool) {
	var members []btf.Member
	switch c := t.(type) {
	case *btf.Struct:
		members = c.Members
	case *btf.Union:
		members = c.Members
	default:
		return btf.Member{}, 0, false
	}
	for _, m := range members {
		if m.Name == name {
			return m, int(m.Offset / 8), true
		}
	}
	for _, m := range members {
		if m.Name != "" {
			continue
		}
		if found, off, ok := member(btf.UnderlyingType(m.Type), name); ok {
			return found, int(m.Offset/8) + off, true
		}
	}
	return btf.Member{}, 0, false
}
