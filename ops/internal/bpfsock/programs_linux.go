package bpfsock

import (
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Policy is what a policy's programs are built from.
type Policy struct {
	// Cgroup is the id of the cgroup the policy is on.
	Cgroup uint64
	// ID tells this policy from others on the same cgroup before or after
	// it; it is written in each socket's Record.
	ID uint64
	// Values are the options to set.
	Values Values
	// Filter chooses the flows.
	Filter Filter
	// ProgramWins leaves to the process the options it sets itself;
	// false keeps the policy's values over the process's.
	ProgramWins bool
}

// Values are the option values a policy sets. A zero Idle, Interval,
// Count or UserTimeout is left alone; SO_KEEPALIVE is always set.
type Values struct {
	Off         bool   // SO_KEEPALIVE 0; false turns it on
	Idle        uint32 // TCP_KEEPIDLE, seconds
	Interval    uint32 // TCP_KEEPINTVL, seconds
	Count       uint32 // TCP_KEEPCNT
	UserTimeout uint32 // TCP_USER_TIMEOUT, milliseconds
}

// named is the options v sets.
func (v Values) named() Options {
	o := KeepAlive
	for _, f := range []struct {
		v   uint32
		opt Options
	}{{v.Idle, Idle}, {v.Interval, Interval}, {v.Count, Count}, {v.UserTimeout, UserTimeout}} {
		if f.v != 0 {
			o |= f.opt
		}
	}
	return o
}

// value returns the value v sets for o, and whether it sets it.
func (v Values) value(o Options) (uint32, bool) {
	switch o {
	case KeepAlive:
		if v.Off {
			return 0, true
		}
		return 1, true
	case Idle:
		return v.Idle, v.Idle != 0
	case Interval:
		return v.Interval, v.Interval != 0
	case Count:
		return v.Count, v.Count != 0
	case UserTimeout:
		return v.UserTimeout, v.UserTimeout != 0
	}
	return 0, false
}

// Filter chooses the flows a policy touches. The zero Filter chooses all.
type Filter struct {
	// Remote holds prefixes the remote address must be within, one of
	// them; an IPv4 prefix also matches IPv4-mapped IPv6 addresses. Empty
	// allows any address.
	Remote []netip.Prefix
	// Ports holds ports the local or the remote port must be, one of
	// them. Empty allows any port.
	Ports []uint16
}

// Maps are the maps a policy's programs use.
type Maps struct {
	Shared *Shared
	Counts *ebpf.Map
}

// SockOps builds the policy's sock_ops program, for the cgroup: as each
// connection of its flows is established (BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB
// and BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB), it sets the policy's options with
// bpf_setsockopt and writes the socket's Record.
func (k *Kernel) SockOps(p *Policy, m *Maps) (*ebpf.Program, error) {
	b := &builder{k: k, p: p, m: m}
	out, passive, how := b.label("out"), b.label("passive"), b.label("how")
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R1, asm.R6, opsOp, asm.Word),
		asm.JEq.Imm(asm.R1, sockOpsActiveEstablished, how),
		asm.JNE.Imm(asm.R1, sockOpsPassiveEstablished, out),
	)
	b.mark(how)
	b.addrsFromSockOps(out)
	b.filter(out)
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, opsSk, asm.DWord),
		asm.JEq.Imm(asm.R1, 0, out),
		asm.FnSkcToTcpSock.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
		asm.Mov.Reg(asm.R7, asm.R0),
	)
	b.storage(true)
	b.decide(out, out)
	b.set(asm.R6)
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, opsOp, asm.Word),
		asm.JEq.Imm(asm.R1, sockOpsPassiveEstablished, passive),
	)
	b.record(Dialled)
	b.emit(asm.Ja.Label(out))
	b.mark(passive)
	b.record(Accepted)
	b.mark(out)
	b.ret(1)
	return b.program(ebpf.ProgramSpec{Name: sockOpsName, Type: ebpf.SockOps, AttachType: ebpf.AttachCGroupSockOps})
}

// Setsockopt builds the policy's cgroup setsockopt program, which sees each
// setsockopt call a process of the cgroup makes. Where the policy wins, a
// call that sets an option the policy sets, on a socket the policy set, is
// swallowed: the kernel skips it and the call returns 0. Where the program
// wins, each call that sets one of the five options on a TCP socket is
// recorded in the socket's Record (Own) and goes through.
func (k *Kernel) Setsockopt(p *Policy, m *Maps) (*ebpf.Program, error) {
	b := &builder{k: k, p: p, m: m}
	out, matched := b.label("out"), b.label("matched")
	b.emit(
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.LoadMem(asm.R2, asm.R6, sockoptLevel, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, sockoptOptname, asm.Word),
	)
	// R9: the option the call sets, as Options.
	watched := AllOptions
	if !p.ProgramWins {
		watched = p.Values.named()
	}
	for _, o := range optionSyscalls {
		if watched&o.opt == 0 {
			continue
		}
		next := b.label("next")
		b.emit(
			asm.JNE.Imm32(asm.R2, o.level, next),
			asm.JNE.Imm32(asm.R3, o.name, next),
			asm.Mov.Imm(asm.R9, int32(o.opt)),
			asm.Ja.Label(matched),
		)
		b.mark(next)
	}
	b.emit(asm.Ja.Label(out))
	b.mark(matched)
	b.emit(
		asm.LoadMem(asm.R7, asm.R6, sockoptSk, asm.DWord),
		asm.JEq.Imm(asm.R7, 0, out),
	)
	if p.ProgramWins {
		b.emit(
			asm.LoadMem(asm.R1, asm.R7, bpfSockProtocol, asm.Word),
			asm.JNE.Imm(asm.R1, unix.IPPROTO_TCP, out),
			asm.LoadMem(asm.R1, asm.R7, bpfSockType, asm.Word),
			asm.JNE.Imm(asm.R1, unix.SOCK_STREAM, out),
		)
		b.storage(true)
		b.emit(
			asm.JEq.Imm(asm.R8, 0, out),
			asm.OrAtomic.Mem(asm.R8, asm.R9, asm.Word, recOwn),
		)
	} else {
		b.storage(false)
		b.emit(
			asm.JEq.Imm(asm.R8, 0, out),
			asm.LoadMem(asm.R1, asm.R8, recCgroup, asm.DWord),
			asm.LoadImm(asm.R2, int64(p.Cgroup), asm.DWord),
			asm.JNE.Reg(asm.R1, asm.R2, out),
			asm.StoreImm(asm.R6, sockoptOptlen, -1, asm.Word),
		)
		b.count(CountKept)
	}
	b.mark(out)
	b.ret(1)
	return b.program(ebpf.ProgramSpec{Name: setsockoptName, Type: ebpf.CGroupSockopt, AttachType: ebpf.AttachCGroupSetsockopt})
}

// tcpStatesSet is the TCP states in which the iterator sets a socket:
// those after the connection was established (ESTABLISHED, FIN_WAIT1,
// FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING). A socket still connecting
// gets the sock_ops program's turn; a listener, a request or a TIME_WAIT
// socket holds no connection.
const tcpStatesSet = 1<<1 | 1<<4 | 1<<5 | 1<<8 | 1<<9 | 1<<11

// ApplyIter builds the policy's TCP iterator program: it sets the policy
// on every established socket of its flows whose cgroup is the policy's or
// a descendant (within 31 levels), as the sock_ops program would have,
// and writes each socket it set to the iterator's output as an iterRecord.
// A TCP iterator walks the sockets of the network namespace it is opened
// in ([RunIter]).
func (k *Kernel) ApplyIter(p *Policy, m *Maps) (*ebpf.Program, error) {
	b := &builder{k: k, p: p, m: m}
	out, match := b.label("out"), b.label("match")
	b.iterSocket(out)
	b.emit(
		b.load(asm.R2, asm.R7, k.state),
		asm.Mov.Imm(asm.R1, 1),
		asm.LSh.Reg(asm.R1, asm.R2),
		asm.And.Imm(asm.R1, tcpStatesSet),
		asm.JEq.Imm(asm.R1, 0, out),
	)
	b.addrsFromSock(out)
	b.filter(out)
	b.walk(match, "", out)
	b.mark(match)
	b.storage(true)
	again, report := b.label("again"), b.label("report")
	b.decide(again, out)
	b.set(asm.R7)
	b.record(Existing)
	b.emit(asm.Ja.Label(report))
	// Set by this policy already: by its sock_ops program, which is not
	// reported, or by this iterator, whose report overflowed the output
	// buffer, after which the kernel runs the program on the socket again
	// (bpf_seq_write returns -EOVERFLOW): report it from its Record.
	b.mark(again)
	b.emit(
		asm.LoadMem(asm.R1, asm.R8, recHow, asm.Word),
		asm.JNE.Imm(asm.R1, int32(Existing), out),
		asm.LoadMem(asm.R1, asm.R8, recSet, asm.Word),
		asm.StoreMem(asm.R10, stSet, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R8, recLeft, asm.Word),
		asm.StoreMem(asm.R10, stOwn, asm.R1, asm.Word),
	)
	b.mark(report)
	b.emit(
		asm.LoadMem(asm.R1, asm.R10, stSet, asm.Word),
		asm.StoreMem(asm.R10, stRecSet, asm.R1, asm.Word),
		asm.LoadMem(asm.R1, asm.R10, stOwn, asm.Word),
		asm.StoreMem(asm.R10, stRecOwn, asm.R1, asm.Word),
		asm.StoreImm(asm.R10, stRecHow, int64(Existing), asm.Word),
		asm.LoadMem(asm.R1, asm.R6, iterMeta, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stRec),
		asm.Mov.Imm(asm.R3, recLen),
		asm.FnSeqWrite.Call(),
	)
	b.mark(out)
	b.ret(0)
	return b.program(ebpf.ProgramSpec{Name: iterName, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: "tcp"})
}

// Programs is a policy's programs, loaded.
type Programs struct {
	SockOps, Setsockopt, Iter *ebpf.Program
}

// LoadPrograms builds and loads the three programs of p.
func (k *Kernel) LoadPrograms(p *Policy, m *Maps) (*Programs, error) {
	ops, err := k.SockOps(p, m)
	if err != nil {
		return nil, err
	}
	sso, err := k.Setsockopt(p, m)
	if err != nil {
		ops.Close()
		return nil, err
	}
	iter, err := k.ApplyIter(p, m)
	if err != nil {
		ops.Close()
		sso.Close()
		return nil, err
	}
	return &Programs{SockOps: ops, Setsockopt: sso, Iter: iter}, nil
}

// Close closes the programs' descriptors; attached programs stay attached.
func (ps *Programs) Close() {
	ps.SockOps.Close()
	ps.Setsockopt.Close()
	ps.Iter.Close()
}

// IterRecord is a connection the apply iterator set, as it reports it.
type IterRecord struct {
	Local, Remote netip.AddrPort
	Set, Own      Options
	How           How
}

// parseIterRecords decodes the apply iterator's output, each connection
// once, also one the kernel showed the program twice.
func parseIterRecords(b []byte) ([]IterRecord, error) {
	if len(b)%recLen != 0 {
		return nil, fmt.Errorf("bpfsock: the iterator wrote %d bytes, not a whole number of %d-byte records", len(b), recLen)
	}
	var rs []IterRecord
	seen := map[[2]netip.AddrPort]bool{}
	for ; len(b) > 0; b = b[recLen:] {
		r := IterRecord{
			Local:  netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[0:16])).Unmap(), nativeUint16(b[32:])),
			Remote: netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[16:32])).Unmap(), nativeUint16(b[34:])),
			Set:    Options(nativeUint32(b[36:])),
			Own:    Options(nativeUint32(b[40:])),
			How:    How(nativeUint32(b[44:])),
		}
		if k := [2]netip.AddrPort{r.Local, r.Remote}; !seen[k] {
			seen[k] = true
			rs = append(rs, r)
		}
	}
	return rs, nil
}
