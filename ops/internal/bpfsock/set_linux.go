package bpfsock

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// A Selection is a set of sockets, by inode number, each with the options
// to set on it and their values: what the set iterator ([Kernel.SetIter])
// changes, and nothing else. It is a hash map, keepalive_sel, whose value
// is a selEntry; the iterator writes what it did in the entry and reports
// the entry.
type Selection struct {
	m *ebpf.Map
}

// Layout of a selection entry (the map's value and the iterator's output):
// what to set, then what the iterator found and did, u32s but the last.
const (
	selFields   = 0  // Options to set
	selWant     = 4  // [5]u32, the value of each option, in optionSyscalls' order
	selDone     = 24 // 1 once the iterator has visited the socket
	selBefore   = 28 // [5]u32, the values read before
	selBeforeEr = 48 // Options whose reading before failed
	selAfter    = 52 // [5]u32, the values read after
	selAfterErr = 72 // Options whose reading after failed
	selSetOK    = 76 // Options set
	selFailed   = 80 // the Option whose setting the kernel refused; zero if none
	selErrno    = 84 // and its error, a negative errno
	selRestErr  = 88 // Options whose restoring failed
	selInode    = 96 // u64, the socket's inode number
	selLen      = 104
)

// Want is what to set on one socket: the options in Set, each to its
// value (SO_KEEPALIVE 0 or 1; TCP_KEEPIDLE and TCP_KEEPINTVL in seconds;
// TCP_KEEPCNT; TCP_USER_TIMEOUT in milliseconds). An option not in Set is
// left alone, whatever its value here.
type Want struct {
	Set                              Options
	KeepAlive, Idle, Interval, Count uint32
	UserTimeout                      uint32
}

// values returns w's values in optionSyscalls' order.
func (w Want) values() [5]uint32 {
	return [5]uint32{w.KeepAlive, w.Idle, w.Interval, w.Count, w.UserTimeout}
}

// NewSelection creates an empty selection that holds at most n sockets,
// unpinned: it goes when it is closed and no program uses it any more. Its
// entries are allocated as they are added.
func NewSelection(n int) (*Selection, error) {
	m, err := ebpf.NewMap(&ebpf.MapSpec{
		Name:       selName,
		Type:       ebpf.Hash,
		KeySize:    8,
		ValueSize:  selLen,
		MaxEntries: uint32(max(n, 1)),
		Flags:      unix.BPF_F_NO_PREALLOC,
	})
	if err != nil {
		return nil, fmt.Errorf("bpfsock: creating the selection map: %w", err)
	}
	return &Selection{m: m}, nil
}

// Add selects the socket with inode number inode, to be set as w says.
func (s *Selection) Add(inode uint64, w Want) error {
	var b [selLen]byte
	putUint32(b[selFields:], uint32(w.Set&AllOptions))
	for i, v := range w.values() {
		putUint32(b[selWant+4*i:], v)
	}
	putUint64(b[selInode:], inode)
	if err := s.m.Update(inode, b[:], ebpf.UpdateNoExist); err != nil {
		return fmt.Errorf("bpfsock: selecting socket %d: %w", inode, err)
	}
	return nil
}

// Close closes the map's descriptor.
func (s *Selection) Close() error { return s.m.Close() }

// SetIter builds a TCP iterator program that changes the sockets of sel
// and no other: for each socket whose inode is in sel (a socket no
// descriptor holds any more has none, and is never selected), it reads
// the five options with bpf_getsockopt, sets those the entry names, in
// the order SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
// TCP_USER_TIMEOUT, and reads them again. As keepalive.Set does, it
// writes no option that holds the value asked already, but SO_KEEPALIVE
// on, and makes the change whole or not at all: when the kernel refuses
// an option, those set before it are set back to the values read before,
// and the rest are not tried. A socket whose options cannot all be read first is not changed
// (its restore could not be made). Each socket is changed once, also when
// the kernel shows it to the program again after a full output buffer.
// [RunSet] runs it.
func (k *Kernel) SetIter(sel *Selection) (*ebpf.Program, error) {
	b := &builder{k: k, p: &Policy{}, m: &Maps{}}
	out, emit, after, restore := b.label("out"), b.label("emit"), b.label("after"), b.label("restore")
	b.iterSocket(out)
	b.emit(
		// The socket's inode, through pointers that a closing socket has
		// not (a read through NULL gives 0).
		asm.LoadMem(asm.R1, asm.R7, k.skSocket.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, k.socketFile.off, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, k.fileInode.off, asm.DWord),
		b.load(asm.R1, asm.R1, k.inodeIno),
		asm.JEq.Imm(asm.R1, 0, out),
		asm.StoreMem(asm.R10, stKey, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, sel.m.FD()),
		asm.Mov.Reg(asm.R2, asm.R10),
		asm.Add.Imm(asm.R2, stKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, out),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.LoadMem(asm.R1, asm.R8, selDone, asm.Word),
		asm.JNE.Imm(asm.R1, 0, emit),
		asm.StoreImm(asm.R8, selDone, 1, asm.Word),
	)
	b.readInto(selBefore, selBeforeEr)
	b.emit(
		asm.LoadMem(asm.R1, asm.R8, selBeforeEr, asm.Word),
		asm.JNE.Imm(asm.R1, 0, after),
	)
	for i, o := range optionSyscalls {
		skip, refused, write := b.label("skip"), b.label("refused"), b.label("write")
		b.emit(
			asm.LoadMem(asm.R1, asm.R8, selFields, asm.Word),
			asm.And.Imm(asm.R1, int32(o.opt)),
			asm.JEq.Imm(asm.R1, 0, skip),
			// A value the socket holds already is not written, but
			// SO_KEEPALIVE on, as keepalive.Set does.
			asm.LoadMem(asm.R1, asm.R8, int16(selWant+4*i), asm.Word),
			asm.LoadMem(asm.R2, asm.R8, int16(selBefore+4*i), asm.Word),
			asm.JNE.Reg(asm.R1, asm.R2, write),
		)
		if o.opt == KeepAlive {
			b.emit(asm.JNE.Imm(asm.R1, 0, write))
		}
		b.emit(asm.Ja.Label(skip))
		b.mark(write)
		b.emit(
			// The value goes through the stack, where the helper reads
			// it.
			asm.StoreMem(asm.R10, stOptval, asm.R1, asm.Word),
		)
		b.sockopt(asm.FnSetsockopt, asm.R7, o.level, o.name)
		b.emit(
			asm.JNE.Imm(asm.R0, 0, refused),
			asm.LoadMem(asm.R1, asm.R8, selSetOK, asm.Word),
			asm.Or.Imm(asm.R1, int32(o.opt)),
			asm.StoreMem(asm.R8, selSetOK, asm.R1, asm.Word),
			asm.Ja.Label(skip),
		)
		b.mark(refused)
		b.emit(
			asm.StoreImm(asm.R8, selFailed, int64(o.opt), asm.Word),
			asm.StoreMem(asm.R8, selErrno, asm.R0, asm.Word),
			asm.Ja.Label(restore),
		)
		b.mark(skip)
	}
	b.emit(asm.Ja.Label(after))
	// Set back, to the values read before, the options set before the
	// one refused.
	b.mark(restore)
	for i, o := range optionSyscalls {
		skip := b.label("keep")
		b.emit(
			asm.LoadMem(asm.R1, asm.R8, selSetOK, asm.Word),
			asm.And.Imm(asm.R1, int32(o.opt)),
			asm.JEq.Imm(asm.R1, 0, skip),
			asm.LoadMem(asm.R1, asm.R8, int16(selBefore+4*i), asm.Word),
			asm.StoreMem(asm.R10, stOptval, asm.R1, asm.Word),
		)
		b.sockopt(asm.FnSetsockopt, asm.R7, o.level, o.name)
		b.emit(
			asm.JEq.Imm(asm.R0, 0, skip),
			asm.LoadMem(asm.R1, asm.R8, selRestErr, asm.Word),
			asm.Or.Imm(asm.R1, int32(o.opt)),
			asm.StoreMem(asm.R8, selRestErr, asm.R1, asm.Word),
		)
		b.mark(skip)
	}
	b.mark(after)
	b.readInto(selAfter, selAfterErr)
	b.mark(emit)
	b.emit(
		asm.LoadMem(asm.R1, asm.R6, iterMeta, asm.DWord),
		asm.LoadMem(asm.R1, asm.R1, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R8),
		asm.Mov.Imm(asm.R3, selLen),
		asm.FnSeqWrite.Call(),
	)
	b.mark(out)
	b.ret(0)
	return b.program(ebpf.ProgramSpec{Name: setName, Type: ebpf.Tracing, AttachType: ebpf.AttachTraceIter, AttachTo: "tcp"})
}

// readInto reads the five options of the socket in R7 with
// bpf_getsockopt into the entry R8 points to, at off, through the stack,
// and the options whose reading failed at errs.
func (b *builder) readInto(off, errs int16) {
	for i, o := range optionSyscalls {
		ok := b.label("read")
		b.emit(
			asm.StoreImm(asm.R10, stOptval, 0, asm.Word),
		)
		b.sockopt(asm.FnGetsockopt, asm.R7, o.level, o.name)
		b.emit(
			asm.JEq.Imm(asm.R0, 0, ok),
			asm.LoadMem(asm.R1, asm.R8, errs, asm.Word),
			asm.Or.Imm(asm.R1, int32(o.opt)),
			asm.StoreMem(asm.R8, errs, asm.R1, asm.Word),
		)
		b.mark(ok)
		b.emit(
			asm.LoadMem(asm.R1, asm.R10, stOptval, asm.Word),
			asm.StoreMem(asm.R8, off+int16(4*i), asm.R1, asm.Word),
		)
	}
}

// InForce is the five options of a socket, as getsockopt reports them.
type InForce struct {
	KeepAlive      bool
	Idle, Interval time.Duration
	Count          int
	UserTimeout    time.Duration
}

// valuesAt decodes five u32s in optionSyscalls' order.
func valuesAt(b []byte) InForce {
	return InForce{
		KeepAlive:   nativeUint32(b[0:]) != 0,
		Idle:        time.Duration(nativeUint32(b[4:])) * time.Second,
		Interval:    time.Duration(nativeUint32(b[8:])) * time.Second,
		Count:       int(nativeUint32(b[12:])),
		UserTimeout: time.Duration(nativeUint32(b[16:])) * time.Millisecond,
	}
}

// SetResult is what the set iterator did to one selected socket.
type SetResult struct {
	Inode uint64
	// Before and After are the values read before and after the change;
	// BeforeErrs and AfterErrs the options whose reading failed, which
	// read as zero. With BeforeErrs not empty, nothing was set.
	Before, After         InForce
	BeforeErrs, AfterErrs Options
	// Set is the options written and left so: those asked for that did
	// not hold the value already, unless the kernel refused one (Refused),
	// in which case Set is empty once those written before it were set
	// back, and RestoreErrs names those that could not be.
	Set Options
	// Refused is the option the kernel refused, with Errno its error;
	// zero when none was.
	Refused     Options
	Errno       unix.Errno
	RestoreErrs Options
}

// parseSetResult decodes one entry of the set iterator's output.
func parseSetResult(b []byte) SetResult {
	r := SetResult{
		Inode:       nativeUint64(b[selInode:]),
		Before:      valuesAt(b[selBefore:]),
		After:       valuesAt(b[selAfter:]),
		BeforeErrs:  Options(nativeUint32(b[selBeforeEr:])),
		AfterErrs:   Options(nativeUint32(b[selAfterErr:])),
		Set:         Options(nativeUint32(b[selSetOK:])),
		Refused:     Options(nativeUint32(b[selFailed:])),
		Errno:       unix.Errno(-int32(nativeUint32(b[selErrno:]))),
		RestoreErrs: Options(nativeUint32(b[selRestErr:])),
	}
	if r.Refused != 0 {
		// Set back: only those whose restoring failed stay changed.
		r.Set = r.RestoreErrs
	}
	return r
}

// RunSet runs the set iterator prog ([Kernel.SetIter]) in each namespace,
// and returns what it did to each selected socket it found, by inode. A
// selected socket it did not find had been closed.
func RunSet(ctx context.Context, prog *ebpf.Program, nss []*Netns) (map[uint64]SetResult, error) {
	res := map[uint64]SetResult{}
	err := RunIter(ctx, prog, nss, func(ns *Netns, out []byte) error {
		if len(out)%selLen != 0 {
			return fmt.Errorf("bpfsock: the set iterator wrote %d bytes, not a whole number of %d-byte entries", len(out), selLen)
		}
		for ; len(out) > 0; out = out[selLen:] {
			r := parseSetResult(out[:selLen])
			res[r.Inode] = r
		}
		return nil
	})
	return res, err
}

func putUint32(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }
func putUint64(b []byte, v uint64) { binary.NativeEndian.PutUint64(b, v) }
