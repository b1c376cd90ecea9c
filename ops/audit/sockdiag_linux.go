package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// dumpRetries is how many times a dump the kernel reports as interrupted
// (the socket table changed under it) is tried again before its partial
// answer is taken.
const dumpRetries = 3

// listConns dumps the TCP sockets of the network namespace ns in a
// connection state, IPv4 and IPv6, and appends to conns those that f's
// port and remote filters select.
//
// The kernel is asked for those states only, and for no extension: a
// busy host holds tens of thousands of sockets in TIME-WAIT, which no
// process holds, and the netlink library's own dump asks for every state
// with each socket's tcp_info, which made listing them the slowest part of
// an audit.
func listConns(ctx context.Context, conns []Conn, ns *bpfsock.Netns, f Filter, progress func(Progress)) ([]Conn, error) {
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		if err = ns.Do(func() error {
			conns, err = dump(conns, family, ns.Inode, f)
			return err
		}); err != nil {
			if !ns.Own() {
				return nil, fmt.Errorf("audit: listing the connections of network namespace %d (of process %d): %w", ns.Inode, ns.PID, err)
			}
			return nil, err
		}
		report(progress, Progress{Stage: Listing, Done: len(conns)})
	}
	return conns, nil
}

// dump asks sock_diag, in the calling thread's network namespace, whose
// inode number is netns, for the TCP sockets of one address family in a
// connection state, and appends to conns those f selects.
func dump(conns []Conn, family uint8, netns uint64, f Filter) ([]Conn, error) {
	n := len(conns)
	for try := 1; ; try++ {
		conns = conns[:n]
		req := nl.NewNetlinkRequest(nl.SOCK_DIAG_BY_FAMILY, unix.NLM_F_DUMP)
		req.AddData(diagRequest{family: family, states: connStates})
		var bad error
		err := req.ExecuteIter(unix.NETLINK_INET_DIAG, nl.SOCK_DIAG_BY_FAMILY, func(msg []byte) bool {
			c, err := parseDiagMsg(msg, netns)
			if err != nil {
				bad = err
				return false
			}
			if f.matchAddrs(c.Local, c.Remote) {
				conns = append(conns, c)
			}
			return true
		})
		switch {
		case bad != nil:
			return nil, bad
		case err == nil, errors.Is(err, nl.ErrDumpInterrupted) && try == dumpRetries:
			return conns, nil
		case !errors.Is(err, nl.ErrDumpInterrupted):
			return nil, fmt.Errorf("audit: listing TCP sockets (sock_diag): %w", err)
		}
	}
}

// diagRequest is an inet_diag_req_v2 (linux/inet_diag.h) for the TCP
// sockets of one family in the states of a bit mask, any addresses, no
// extensions.
type diagRequest struct {
	family uint8
	states uint32
}

const sizeofDiagRequest = 56 // family, protocol, ext, pad, states, inet_diag_sockid

func (r diagRequest) Len() int { return sizeofDiagRequest }

func (r diagRequest) Serialize() []byte {
	b := make([]byte, sizeofDiagRequest)
	b[0], b[1] = r.family, unix.IPPROTO_TCP
	binary.NativeEndian.PutUint32(b[4:], r.states)
	return b
}

// The fields of an inet_diag_msg that listConns reads, at their offsets.
const (
	diagFamily  = 0  // u8
	diagState   = 1  // u8
	diagTimer   = 2  // u8
	diagRetrans = 3  // u8
	diagSport   = 4  // __be16
	diagDport   = 6  // __be16
	diagSrc     = 8  // __be32[4]
	diagDst     = 24 // __be32[4]
	diagExpires = 52 // u32, milliseconds
	diagUID     = 64 // u32
	diagInode   = 68 // u32
	sizeofDiag  = 72
)

// parseDiagMsg decodes one inet_diag_msg into a connection of namespace
// netns.
func parseDiagMsg(b []byte, netns uint64) (Conn, error) {
	if len(b) < sizeofDiag {
		return Conn{}, fmt.Errorf("audit: sock_diag answered %d bytes, not an inet_diag_msg (%d)", len(b), sizeofDiag)
	}
	addr := func(off int) netip.Addr {
		if b[diagFamily] == unix.AF_INET {
			return netip.AddrFrom4([4]byte(b[off : off+4]))
		}
		return netip.AddrFrom16([16]byte(b[off : off+16])).Unmap()
	}
	return Conn{
		Local:  netip.AddrPortFrom(addr(diagSrc), binary.BigEndian.Uint16(b[diagSport:])),
		Remote: netip.AddrPortFrom(addr(diagDst), binary.BigEndian.Uint16(b[diagDport:])),
		State:  State(b[diagState]),
		Inode:  binary.NativeEndian.Uint32(b[diagInode:]),
		Netns:  netns,
		UID:    binary.NativeEndian.Uint32(b[diagUID:]),
		Timer: Timer{
			Kind:    TimerKind(b[diagTimer]),
			Expires: time.Duration(binary.NativeEndian.Uint32(b[diagExpires:])) * time.Millisecond,
			Count:   int(b[diagRetrans]),
		},
	}, nil
}

// report calls progress, if not nil, with p.
func report(progress func(Progress), p Progress) {
	if progress != nil {
		progress(p)
	}
}
