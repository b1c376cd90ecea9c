package bpfsock

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The dump iterator writes, for each socket, the connection's addresses
// and ports as the apply iterator has them on its stack (stRec, the first
// dumpAddrLen bytes), then what follows, from stDump:
const (
	dumpAddrLen = 36

	stDump      = -200
	dFamily     = 0  // u16, AF_INET or AF_INET6
	dState      = 2  // u8, TCP state
	dFlags      = 3  // u8, dumpHasRecord
	dUID        = 4  // u32, the socket's owner
	dInode      = 8  // u64, the socket's inode number
	dCgroup     = 16 // u64, the id of the socket's cgroup
	dKeepAlive  = 24 // u32, getsockopt SO_KEEPALIVE
	dIdle       = 28 // u32, TCP_KEEPIDLE, seconds
	dInterval   = 32 // u32, TCP_KEEPINTVL, seconds
	dCount      = 36 // u32, TCP_KEEPCNT
	dUserTmo    = 40 // u32, TCP_USER_TIMEOUT, milliseconds
	dErrs       = 44 // u32, Options whose getsockopt failed
	dRecord     = 48 // Record, when dumpHasRecord
	dumpRestLen = 80

	dumpHasRecord = 1

	iterUID = 16 // struct bpf_iter__tcp: uid
)

// DumpIter builds a TCP iterator program that reports every full TCP
// socket of the namespace it is opened in (listening ones and those
// closing included; request and TIME_WAIT sockets are not full sockets)
// with the keepalive values in force, read with bpf_getsockopt, its owner,
// inode and cgroup, and the Record the policies' programs keep for it in
// shared's socket storage map, if any; with shared nil (no policy is
// pinned, so no map holds records), none has a Record. It changes
// nothing. [RunDump] runs it.
func (k *Kernel) DumpIter(shared *Shared) (*ebpf.Program, error) {
	b := &builder{k: k, p: &Policy{}, m: &Maps{Shared: shared}}
	out := b.label("out")
	b.iterSocket(out)
	b.emit(asm.Mov.Imm(asm.R1, 0))
	for off := int16(0); off < dumpRestLen; off += 8 {
		b.emit(asm.StoreMem(asm.R10, stDump+off, asm.R1, asm.DWord))
	}
	b.addrsFromSock(out)
	b.emit(
		b.load(asm.R1, asm.R7, k.family),
		asm.StoreMem(asm.R10, stDump+dFamily, asm.R1, asm.Half),
		b.load(asm.R1, asm.R7, k.state),
		asm.StoreMem(asm.R10, stDump+dState, asm.R1, asm.Byte),
		asm.LoadMem(asm.R1, asm.R6, iterUID, asm.Word),
		asm.StoreMem(asm.R10, stDump+dUID, asm.R1, asm.Word),
		// Pointers read through BTF may be NULL (a socket being closed
		// has no struct socket): a read through NULL gives 0.
		asm.LoadMem(asm.R1, asm.R7, k.skSocket.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, k.socketFile.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, k.fileInode.off, asm.DWord),
		b.load(asm.R1, asm.R1, k.inodeIno),
		asm.StoreMem(asm.R10, stDump+dInode, asm.R1, asm.DWord),
		asm.LoadMem(asm.R1, asm.R7, k.cgroup.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, k.cgroupKN.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, k.kernfsID.off, asm.DWord),
		asm.StoreMem(asm.R10, stDump+dCgroup, asm.R1, asm.DWord),
	)
	for i, o := range optionSyscalls {
		ok := b.label("got")
		b.emit(
			asm.Mov.Reg(asm.R1, asm.R7),
			asm.Mov.Imm(asm.R2, o.level),
			asm.Mov.Imm(asm.R3, o.name),
			asm.Mov.Reg(asm.R4, asm.R10),
			asm.Add.Imm(asm.R4, int32(stDump+dKeepAlive+4*i)),
			asm.Mov.Imm(asm.R5, 4),
			asm.FnGetsockopt.Call(),
			asm.JEq.Imm(asm.R0, 0, ok),
			asm.LoadMem(asm.R1, asm.R10, stDump+dErrs, asm.Word),
			asm.Or.Imm(asm.R1, int32(o.opt)),
			asm.StoreMem(asm.R10, stDump+dErrs, asm.R1, asm.Word),
		)
		b.mark(ok)
	}
	if shared != nil {
		b.storage(false)
		none := b.label("no_record")
		b.emit(asm.JEq.Imm(asm.R8, 0, none))
		for off := int16(0); off < recordLen; off += 8 {
			b.emit(
				asm.LoadMem(asm.R1, asm.R8, off, asm.DWord),
				asm.StoreMem(asm.R10, stDump+dRecord+off, asm.R1, asm.DWord),
			)
		}
		b.emit(asm.StoreImm(asm.R10, stDump+dFlags, dumpHasRecord, asm.Byte))
		b.mark(none)
	}
	for _, part := range []struct{ off, n int32 }{{stRec, dumpAddrLen}, {stDump, dumpRestLen}} {
		b.emit(
			asm.LoadMem(asm.R1, asm.R6, iterMeta, asm.DWord),
			asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord),
			asm.Mov.Reg(asm.R2, asm.R10),
			asm.Add.Imm(asm.R2, part.off),
			asm.Mov.Imm(asm.R3, part.n),
			asm.FnSeqWrite.Call(),
		)
	}
	b.mark(out)
	b.ret(0)
	return b.program(ebpf.ProgramSpec{Name: dumpName, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: "tcp"})
}

// Socket is one socket as the dump iterator reports it.
type Socket struct {
	Local, Remote netip.AddrPort
	// Family is AF_INET or AF_INET6; an IPv4-mapped address of an AF_INET6
	// socket is reported unmapped.
	Family uint16
	// State is the TCP state, as in linux/tcp_states.h (1 ESTABLISHED,
	// 10 LISTEN, ...).
	State uint8
	// UID is the socket's owner; Inode its inode number, as
	// /proc/PID/fd/N links show it (socket:[Inode]), zero for a socket no
	// descriptor holds any more.
	UID   uint32
	Inode uint64
	// Cgroup is the id of the socket's cgroup.
	Cgroup uint64
	// The values in force, as getsockopt reports them: KeepAlive
	// (SO_KEEPALIVE), Idle, Interval, Count and UserTimeout. Errs holds
	// the options whose reading failed (a Multipath TCP subflow, say), which
	// read as zero.
	KeepAlive      bool
	Idle, Interval time.Duration
	Count          int
	UserTimeout    time.Duration
	Errs           Options
	// Record is what the policies' programs keep for the socket, when
	// HasRecord.
	Record    Record
	HasRecord bool
}

// dumpLen is the size of one socket in the dump iterator's output.
const dumpLen = dumpAddrLen + dumpRestLen

// RunDump runs the dump iterator prog ([Kernel.DumpIter]) in each
// namespace and returns the sockets of each.
func RunDump(ctx context.Context, prog *ebpf.Program, nss []*Netns) (map[*Netns][]Socket, error) {
	socks := map[*Netns][]Socket{}
	err := DumpEach(ctx, prog, nss, func(ns *Netns, s *Socket) error {
		socks[ns] = append(socks[ns], *s)
		return nil
	})
	return socks, err
}

// DumpEach runs the dump iterator prog ([Kernel.DumpIter]) in each
// namespace, and calls each with every socket as it is read, which it
// must not keep: nothing else is held in memory, whatever the number of
// sockets. It stops at the first error each returns.
func DumpEach(ctx context.Context, prog *ebpf.Program, nss []*Netns, each func(ns *Netns, s *Socket) error) error {
	var b [dumpLen]byte
	var s Socket
	return runIter(ctx, prog, nss, func(ns *Netns, r io.Reader) error {
		br := bufio.NewReaderSize(r, 64<<10)
		for {
			_, err := io.ReadFull(br, b[:])
			switch {
			case err == io.EOF:
				return nil
			case err == io.ErrUnexpectedEOF:
				return fmt.Errorf("bpfsock: the dump iterator wrote a part of a %d-byte record in network namespace %d", dumpLen, ns.Inode)
			case err != nil:
				return fmt.Errorf("bpfsock: running the iterator in network namespace %d: %w", ns.Inode, err)
			}
			s = parseSocket(b[:])
			if err := each(ns, &s); err != nil {
				return err
			}
		}
	})
}

// parseSocket decodes one socket of the dump iterator's output.
func parseSocket(b []byte) Socket {
	d := b[dumpAddrLen:]
	s := Socket{
		Local:       netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[0:16])).Unmap(), nativeUint16(b[32:])),
		Remote:      netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[16:32])).Unmap(), nativeUint16(b[34:])),
		Family:      nativeUint16(d[dFamily:]),
		State:       d[dState],
		UID:         nativeUint32(d[dUID:]),
		Inode:       nativeUint64(d[dInode:]),
		Cgroup:      nativeUint64(d[dCgroup:]),
		KeepAlive:   nativeUint32(d[dKeepAlive:]) != 0,
		Idle:        time.Duration(nativeUint32(d[dIdle:])) * time.Second,
		Interval:    time.Duration(nativeUint32(d[dInterval:])) * time.Second,
		Count:       int(nativeUint32(d[dCount:])),
		UserTimeout: time.Duration(nativeUint32(d[dUserTmo:])) * time.Millisecond,
		Errs:        Options(nativeUint32(d[dErrs:])),
		HasRecord:   d[dFlags]&dumpHasRecord != 0,
	}
	if s.HasRecord {
		r := d[dRecord:]
		s.Record = Record{
			Cgroup: nativeUint64(r[recCgroup:]),
			Policy: nativeUint64(r[recPolicy:]),
			Set:    Options(nativeUint32(r[recSet:])),
			Own:    Options(nativeUint32(r[recOwn:])),
			How:    How(nativeUint32(r[recHow:])),
			Left:   Options(nativeUint32(r[recLeft:])),
		}
	}
	return s
}
