package bpfsock

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// The emitters the programs are made of. A program keeps its context in
// R6, the socket as a struct tcp_sock pointer in R7 and its Record (or
// zero) in R8; helpers clobber R0 to R5. Its stack holds:
const (
	stOptval = -8  // u32, the value bpf_setsockopt sets
	stKey    = -16 // u64, a key of the policies map
	stApply  = -20 // u32, Options still to set
	stSet    = -24 // u32, Options set
	stOwn    = -28 // u32, Options left to the process

	// stRec is the connection as the iterator reports it, an iterRecord:
	// the local and remote addresses as IPv6 (IPv4 mapped), network
	// order, then the local and remote ports, host order, then the
	// Options set and left to the process, and How.
	stRec    = -80
	stLaddr  = stRec
	stRaddr  = stRec + 16
	stLport  = stRec + 32 // u16
	stRport  = stRec + 34 // u16
	stRecSet = stRec + 36 // u32
	stRecOwn = stRec + 40 // u32
	stRecHow = stRec + 44 // u32
	recLen   = 48
)

// maxDepth is how many cgroups, the socket's own and its ancestors, the
// cgroup walk looks at: a policy covers sockets of cgroups at most
// maxDepth-1 levels below its own.
const maxDepth = 32

// UAPI offsets (linux/bpf.h), which do not change between kernels.
const (
	opsOp         = 0   // struct bpf_sock_ops: op
	opsFamily     = 20  // family
	opsRemoteIP4  = 24  // remote_ip4, network order
	opsLocalIP4   = 28  // local_ip4
	opsRemoteIP6  = 32  // remote_ip6[4]
	opsLocalIP6   = 48  // local_ip6[4]
	opsRemotePort = 64  // remote_port, network order in a u32
	opsLocalPort  = 68  // local_port, host order
	opsSk         = 184 // sk

	sockoptSk      = 0  // struct bpf_sockopt: sk
	sockoptLevel   = 24 // level
	sockoptOptname = 28 // optname
	sockoptOptlen  = 32 // optlen

	bpfSockType     = 8  // struct bpf_sock: type
	bpfSockProtocol = 12 // protocol

	iterMeta = 0 // struct bpf_iter__tcp: meta, whose first field is the seq_file
	iterSk   = 8 // sk_common

	sockOpsActiveEstablished  = 4 // BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
	sockOpsPassiveEstablished = 5 // BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB
	storageCreate             = 1 // BPF_SK_STORAGE_GET_F_CREATE
)

// optionSyscalls gives each option's level and name for setsockopt, in the
// order the programs set them: SO_KEEPALIVE first, as the library does.
var optionSyscalls = [...]struct {
	opt         Options
	level, name int32
}{
	{KeepAlive, unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	{Idle, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
	{Interval, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
	{Count, unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
	{UserTimeout, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
}

// builder assembles one program.
type builder struct {
	k       *Kernel
	p       *Policy
	m       *Maps
	insns   asm.Instructions
	labels  int
	pending string // the label of the next instruction emitted
}

// emit appends instructions, the first one carrying a label if one is
// pending.
func (b *builder) emit(ins ...asm.Instruction) {
	for _, in := range ins {
		if b.pending != "" {
			in = in.WithSymbol(b.pending)
			b.pending = ""
		}
		b.insns = append(b.insns, in)
	}
}

// label returns a new label, unique in the program.
func (b *builder) label(name string) string {
	b.labels++
	return fmt.Sprintf("%s_%d", name, b.labels)
}

// mark puts label on the next instruction emitted. An instruction has one
// label, so a second one in a row gets a jump to the next instruction.
func (b *builder) mark(label string) {
	if b.pending != "" {
		b.emit(asm.Instruction{OpCode: asm.Ja.Op(asm.ImmSource)})
	}
	b.pending = label
}

// ret ends the program with the value v.
func (b *builder) ret(v int32) {
	b.emit(asm.Mov.Imm(asm.R0, v), asm.Return())
}

// program loads what was assembled.
func (b *builder) program(spec ebpf.ProgramSpec) (*ebpf.Program, error) {
	spec.Instructions = b.insns
	spec.License = "GPL" // bpf_sk_storage_get and others are GPL-only
	prog, err := ebpf.NewProgram(&spec)
	if err != nil {
		return nil, fmt.Errorf("bpfsock: loading the %s program: %w", spec.Name, explainLoad(err))
	}
	return prog, nil
}

// iterSocket starts a TCP iterator program: the context in R6, the socket
// as a struct tcp_sock in R7, and a jump to out for what is not a full TCP
// socket (a request or TIME_WAIT socket), and for the call that ends the
// walk, which has none.
func (b *builder) iterSocket(out string) {
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, iterSk, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, out),
		asm.FnSkcToTcpSock.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
		asm.Mov.Reg(asm.R7, asm.R0),
	)
}

// count adds one to the policy's counter c.
func (b *builder) count(c Counter) {
	b.emit(
		asm.LoadMapValue(asm.R1, b.m.Counts.FD(), uint32(8*c)),
		asm.Mov.Imm(asm.R2, 1),
		asm.StoreXAdd(asm.R1, asm.R2, asm.DWord),
	)
}

// mapped is the third 32-bit word of an IPv4-mapped IPv6 address, as
// loaded from memory.
var mapped = int32(binary.NativeEndian.Uint32([]byte{0, 0, 0xff, 0xff}))

// addrsFromSockOps puts the connection's addresses and ports from a
// sock_ops context (R6) on the stack, and jumps to out for a family other
// than IPv4 and IPv6.
func (b *builder) addrsFromSockOps(out string) {
	v6, ports := b.label("ops_v6"), b.label("ops_ports")
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, opsFamily, asm.Word),
		asm.JEq.Imm(asm.R1, unix.AF_INET6, v6),
		asm.JNE.Imm(asm.R1, unix.AF_INET, out),
	)
	b.v4(stLaddr, func() { b.emit(asm.LoadMem(asm.R1, asm.R6, opsLocalIP4, asm.Word)) })
	b.v4(stRaddr, func() { b.emit(asm.LoadMem(asm.R1, asm.R6, opsRemoteIP4, asm.Word)) })
	b.emit(asm.Ja.Label(ports))
	b.mark(v6)
	for i := int16(0); i < 16; i += 4 {
		b.emit(
			asm.LoadMem(asm.R1, asm.R6, opsLocalIP6+i, asm.Word),
			asm.StoreMem(asm.R10, stLaddr+i, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R6, opsRemoteIP6+i, asm.Word),
			asm.StoreMem(asm.R10, stRaddr+i, asm.R1, asm.Word),
		)
	}
	b.mark(ports)
	b.emit(
		// The remote port's two bytes in network order end a u32 in
		// memory: converted from big endian it is the port.
		asm.LoadMem(asm.R1, asm.R6, opsRemotePort, asm.Word),
		asm.HostTo(asm.BE, asm.R1, asm.Word),
		asm.StoreMem(asm.R10, stRport, asm.R1, asm.Half),
		asm.LoadMem(asm.R1, asm.R6, opsLocalPort, asm.Word),
		asm.StoreMem(asm.R10, stLport, asm.R1, asm.Half),
	)
}

// addrsFromSock puts the addresses and ports of the socket in R7 (a struct
// tcp_sock pointer) on the stack, and jumps to out for a family other
// than IPv4 and IPv6.
func (b *builder) addrsFromSock(out string) {
	k := b.k
	v6, ports := b.label("sk_v6"), b.label("sk_ports")
	b.emit(
		b.load(asm.R1, asm.R7, k.family),
		asm.JEq.Imm(asm.R1, unix.AF_INET6, v6),
		asm.JNE.Imm(asm.R1, unix.AF_INET, out),
	)
	b.v4(stLaddr, func() { b.emit(asm.LoadMem(asm.R1, asm.R7, k.rcvSaddr.off, asm.Word)) })
	b.v4(stRaddr, func() { b.emit(asm.LoadMem(asm.R1, asm.R7, k.daddr.off, asm.Word)) })
	b.emit(asm.Ja.Label(ports))
	b.mark(v6)
	for i := int16(0); i < 16; i += 4 {
		b.emit(
			asm.LoadMem(asm.R1, asm.R7, k.v6RcvSaddr.off+i, asm.Word),
			asm.StoreMem(asm.R10, stLaddr+i, asm.R1, asm.Word),
			asm.LoadMem(asm.R1, asm.R7, k.v6Daddr.off+i, asm.Word),
			asm.StoreMem(asm.R10, stRaddr+i, asm.R1, asm.Word),
		)
	}
	b.mark(ports)
	b.emit(
		b.load(asm.R1, asm.R7, k.dport),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.StoreMem(asm.R10, stRport, asm.R1, asm.Half),
		b.load(asm.R1, asm.R7, k.num),
		asm.StoreMem(asm.R10, stLport, asm.R1, asm.Half),
	)
}

// v4 writes the IPv4 address that load puts in R1 at off as an
// IPv4-mapped IPv6 address.
func (b *builder) v4(off int16, load func()) {
	b.emit(
		asm.StoreImm(asm.R10, off, 0, asm.Word),
		asm.StoreImm(asm.R10, off+4, 0, asm.Word),
		asm.StoreImm(asm.R10, off+8, int64(mapped), asm.Word),
	)
	load()
	b.emit(asm.StoreMem(asm.R10, off+12, asm.R1, asm.Word))
}

// load reads field f of the struct R src points to into dst.
func (b *builder) load(dst, src asm.Register, f field) asm.Instruction {
	size := map[int]asm.Size{1: asm.Byte, 2: asm.Half, 4: asm.Word, 8: asm.DWord}[f.size]
	return asm.LoadMem(dst, src, f.off, size)
}

// filter jumps to out unless the connection on the stack is one of the
// policy's flows: its remote address within one of the prefixes, and its
// local or remote port one of the ports (an empty list allows any).
func (b *builder) filter(out string) {
	f := b.p.Filter
	anyRemote := len(f.Remote) == 0
	for _, p := range f.Remote {
		// ::/0 holds every address, IPv4-mapped ones too.
		anyRemote = anyRemote || p.Bits() == 0 && p.Addr().Is6()
	}
	if !anyRemote {
		ok := b.label("remote_ok")
		for _, p := range f.Remote {
			next := b.label("remote_next")
			mask, net := prefixWords(p)
			for i := range 4 {
				if mask[i] == 0 {
					continue
				}
				b.emit(
					asm.LoadMem(asm.R1, asm.R10, stRaddr+int16(4*i), asm.Word),
					asm.And.Imm32(asm.R1, int32(mask[i])),
					asm.JNE.Imm32(asm.R1, int32(net[i]), next),
				)
			}
			b.emit(asm.Ja.Label(ok))
			b.mark(next)
		}
		b.emit(asm.Ja.Label(out))
		b.mark(ok)
	}
	if len(f.Ports) > 0 {
		ok := b.label("port_ok")
		b.emit(
			asm.LoadMem(asm.R1, asm.R10, stLport, asm.Half),
			asm.LoadMem(asm.R2, asm.R10, stRport, asm.Half),
		)
		for _, port := range f.Ports {
			b.emit(
				asm.JEq.Imm(asm.R1, int32(port), ok),
				asm.JEq.Imm(asm.R2, int32(port), ok),
			)
		}
		b.emit(asm.Ja.Label(out))
		b.mark(ok)
	}
}

// prefixWords returns p's mask and masked address as four 32-bit words,
// as loaded from memory, with an IPv4 prefix made the IPv4-mapped IPv6
// prefix it matches.
func prefixWords(p netip.Prefix) (mask, net [4]uint32) {
	bits := p.Bits()
	addr := p.Masked().Addr()
	if addr.Is4() {
		addr = netip.AddrFrom16(addr.As16())
		bits += 96
	}
	a := addr.As16()
	var m [16]byte
	for i := range bits {
		m[i/8] |= 0x80 >> (i % 8)
	}
	for i := range 4 {
		mask[i] = binary.NativeEndian.Uint32(m[4*i:])
		net[i] = binary.NativeEndian.Uint32(a[4*i:])
	}
	return mask, net
}

// walk walks up from the cgroup of the socket in R7, nearest first, and
// jumps to mine at the policy's cgroup, to other at the cgroup whose id is
// in R3 (when other is not empty; R3 must then not be zero), and to none
// when it finds neither within maxDepth cgroups. A loaded pointer is not
// trusted by the verifier, but may be read: a read through NULL gives 0.
func (b *builder) walk(mine, other, none string) {
	k := b.k
	b.emit(
		asm.LoadMem(asm.R1, asm.R7, k.cgroup.off, asm.DWord),
		asm.LoadImm(asm.R2, int64(b.p.Cgroup), asm.DWord),
	)
	for range maxDepth {
		b.emit(
			asm.JEq.Imm(asm.R1, 0, none),
			asm.LoadMem(asm.R4, asm.R1, k.cgroupKN.off, asm.DWord),
			asm.LoadMem(asm.R4, asm.R4, k.kernfsID.off, asm.DWord),
			asm.JEq.Reg(asm.R4, asm.R2, mine),
		)
		if other != "" {
			b.emit(asm.JEq.Reg(asm.R4, asm.R3, other))
		}
		b.emit(
			asm.LoadMem(asm.R1, asm.R1, k.cgroupParent.off, asm.DWord),
			asm.JEq.Imm(asm.R1, 0, none),
			asm.LoadMem(asm.R1, asm.R1, k.cssCgroup.off, asm.DWord),
		)
	}
	b.emit(asm.Ja.Label(none))
}

// storage puts the socket's Record (R7's) in R8, created if create, or
// zero.
func (b *builder) storage(create bool) {
	flags := int32(0)
	if create {
		flags = storageCreate
	}
	b.emit(
		asm.LoadMapPtr(asm.R1, b.m.Shared.Sockets.FD()),
		asm.Mov.Reg(asm.R2, asm.R7),
		asm.Mov.Imm(asm.R3, 0),
		asm.Mov.Imm(asm.R4, flags),
		asm.FnSkStorageGet.Call(),
		asm.Mov.Reg(asm.R8, asm.R0),
	)
}

// decide settles, for a socket of the policy's flows whose Record is in R8
// (or zero), what the policy sets: it jumps to again when the socket was
// already set by this very policy, to out when it was set by the policy of
// a cgroup nearer to the socket that is still in force; otherwise it
// leaves the options to set in stApply and those left to the process in
// stOwn.
func (b *builder) decide(again, out string) {
	p := b.p
	fresh, ours, notOurs := b.label("fresh"), b.label("ours"), b.label("not_ours")
	nearer, own := b.label("nearer"), b.label("own")
	b.emit(
		asm.StoreImm(asm.R10, stOwn, 0, asm.Word),
		asm.JEq.Imm(asm.R8, 0, fresh),
		asm.LoadMem(asm.R3, asm.R8, recCgroup, asm.DWord),
		asm.JEq.Imm(asm.R3, 0, fresh),
		asm.LoadImm(asm.R2, int64(p.Cgroup), asm.DWord),
		asm.JEq.Reg(asm.R3, asm.R2, ours),
		// Set by another cgroup's policy: is it still in force?
		asm.StoreMem(asm.R10, stKey, asm.R3, asm.DWord),
		asm.LoadMapPtr(asm.R1, b.m.Shared.Policies.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, fresh),
		// It is: the nearer of the two cgroups to the socket wins.
		asm.LoadMem(asm.R3, asm.R10, stKey, asm.DWord),
	)
	b.walk(fresh, nearer, fresh)
	b.mark(nearer)
	b.count(CountNearer)
	b.emit(asm.Ja.Label(out))

	b.mark(ours)
	b.emit(
		asm.LoadMem(asm.R3, asm.R8, recPolicy, asm.DWord),
		asm.LoadImm(asm.R2, int64(p.ID), asm.DWord),
		asm.JEq.Reg(asm.R3, asm.R2, again),
	)
	b.mark(fresh)
	if !p.ProgramWins {
		b.emit(asm.StoreImm(asm.R10, stApply, int64(p.Values.named()), asm.Word))
		return
	}
	// The program wins: leave alone what the process set itself, as the
	// setsockopt program recorded it, or as the socket's fields show: a
	// field that is not zero was set, by the process or, on an accepted
	// socket, on its listener, unless a policy set it.
	b.emit(
		asm.Mov.Imm(asm.R5, 0),
		asm.JEq.Imm(asm.R8, 0, notOurs),
		asm.LoadMem(asm.R5, asm.R8, recOwn, asm.Word),
	)
	b.mark(notOurs)
	k := b.k
	b.emit(asm.Mov.Imm(asm.R2, 0))
	for _, f := range []struct {
		field field
		opt   Options
	}{{k.keepTime, Idle}, {k.keepIntvl, Interval}, {k.keepProbes, Count}, {k.userTimout, UserTimeout}} {
		skip := b.label("raw")
		b.emit(
			b.load(asm.R1, asm.R7, f.field),
			asm.JEq.Imm(asm.R1, 0, skip),
			asm.Or.Imm(asm.R2, int32(f.opt)),
		)
		b.mark(skip)
	}
	b.emit(
		b.load(asm.R1, asm.R7, k.flags),
		asm.RSh.Imm(asm.R1, int32(k.keepOpen)),
		asm.And.Imm(asm.R1, 1),
		asm.JEq.Imm(asm.R1, 0, own),
		asm.Or.Imm(asm.R2, int32(KeepAlive)),
	)
	b.mark(own)
	done := b.label("own_done")
	b.emit(
		asm.JEq.Imm(asm.R8, 0, done),
		asm.LoadMem(asm.R3, asm.R8, recCgroup, asm.DWord),
		asm.JEq.Imm(asm.R3, 0, done),
		asm.LoadMem(asm.R3, asm.R8, recSet, asm.Word),
		asm.Xor.Imm32(asm.R3, -1),
		asm.And.Reg(asm.R2, asm.R3),
	)
	b.mark(done)
	b.emit(
		asm.Or.Reg(asm.R5, asm.R2),
		asm.And.Imm(asm.R5, int32(p.Values.named())),
		asm.StoreMem(asm.R10, stOwn, asm.R5, asm.Word),
		asm.Xor.Imm32(asm.R5, -1),
		asm.And.Imm(asm.R5, int32(p.Values.named())),
		asm.StoreMem(asm.R10, stApply, asm.R5, asm.Word),
	)
}

// set calls bpf_setsockopt, with sk as its first argument (the sock_ops
// context, or the socket), for each option in stApply, and leaves in stSet
// those the kernel accepted; each refusal counts as CountFailed.
func (b *builder) set(sk asm.Register) {
	b.emit(asm.StoreImm(asm.R10, stSet, 0, asm.Word))
	for _, o := range optionSyscalls {
		v, ok := b.p.Values.value(o.opt)
		if !ok {
			continue
		}
		skip, failed := b.label("skip"), b.label("failed")
		b.emit(
			asm.LoadMem(asm.R1, asm.R10, stApply, asm.Word),
			asm.And.Imm(asm.R1, int32(o.opt)),
			asm.JEq.Imm(asm.R1, 0, skip),
			asm.StoreImm(asm.R10, stOptval, int64(int32(v)), asm.Word),
		)
		b.sockopt(asm.FnSetsockopt, sk, o.level, o.name)
		b.emit(
			asm.JNE.Imm(asm.R0, 0, failed),
			asm.LoadMem(asm.R1, asm.R10, stSet, asm.Word),
			asm.Or.Imm(asm.R1, int32(o.opt)),
			asm.StoreMem(asm.R10, stSet, asm.R1, asm.Word),
			asm.Ja.Label(skip),
		)
		b.mark(failed)
		b.count(CountFailed)
		b.mark(skip)
	}
}

// sockopt calls fn, bpf_setsockopt or bpf_getsockopt, on the socket (or
// sock_ops context) in sk for the option level, name, with the 32-bit
// value at stOptval; its answer is in R0.
func (b *builder) sockopt(fn asm.BuiltinFunc, sk asm.Register, level, name int32) {
	b.emit(
		asm.Mov.Reg(asm.R1, sk),
		asm.Mov.Imm(asm.R2, level),
		asm.Mov.Imm(asm.R3, name),
		asm.Mov.Reg(asm.R4, asm.R10),
		asm.Add.Imm(asm.R4, stOptval),
		asm.Mov.Imm(asm.R5, 4),
		fn.Call(),
	)
}

// record writes, in the Record in R8 if there is one, that the policy set
// the socket, how, and what; and counts the connection.
func (b *builder) record(how How) {
	p := b.p
	none := b.label("no_record")
	b.emit(
		asm.JEq.Imm(asm.R8, 0, none),
		asm.LoadImm(asm.R1, int64(p.Cgroup), asm.DWord),
		asm.StoreMem(asm.R8, recCgroup, asm.R1, asm.DWord),
		asm.LoadImm(asm.R1, int64(p.ID), asm.DWord),
		asm.StoreMem(asm.R8, recPolicy, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R10, stSet, asm.Word),
		asm.StoreMem(asm.R8, recSet, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R10, stOwn, asm.Word),
		asm.StoreMem(asm.R8, recLeft, asm.R1, asm.Word),
		asm.StoreImm(asm.R8, recHow, int64(how), asm.Word),
	)
	b.mark(none)
	switch how {
	case Dialled:
		b.count(CountDialled)
	case Accepted:
		b.count(CountAccepted)
	case Existing:
		b.count(CountExisting)
	}
	if p.ProgramWins {
		skip := b.label("not_yielded")
		b.emit(
			asm.LoadMem(asm.R1, asm.R10, stOwn, asm.Word),
			asm.JEq.Imm(asm.R1, 0, skip),
		)
		b.count(CountYielded)
		b.mark(skip)
	}
}
