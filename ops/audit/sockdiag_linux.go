package audit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// dumpRetries is how many times a dump the kernel reports as interrupted
// (the socket table changed under it) is tried again before its partial
// answer is taken.
const dumpRetries = 3

// listConns dumps the TCP sockets of the network namespace h was made in,
// IPv4 and IPv6, and returns those in a connection state that f's port and
// remote filters select.
func listConns(ctx context.Context, h *netlink.Handle, f Filter, progress func(Progress)) ([]Conn, error) {
	var conns []Conn
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		socks, err := dump(h, family)
		if err != nil {
			return nil, err
		}
		conns = slices.Grow(conns, len(socks))
		for _, s := range socks {
			if connStates&(1<<s.State) == 0 {
				continue
			}
			local := addrPort(s.ID.Source, s.ID.SourcePort)
			remote := addrPort(s.ID.Destination, s.ID.DestinationPort)
			if !f.matchAddrs(local, remote) {
				continue
			}
			conns = append(conns, Conn{
				Local:  local,
				Remote: remote,
				State:  State(s.State),
				Inode:  s.INode,
				UID:    s.UID,
				Timer: Timer{
					Kind:    TimerKind(s.Timer),
					Expires: time.Duration(s.Expires) * time.Millisecond,
					Count:   int(s.Retrans),
				},
			})
		}
		report(progress, Progress{Stage: Listing, Done: len(conns)})
	}
	return conns, nil
}

// dump asks sock_diag for every TCP socket of one address family.
func dump(h *netlink.Handle, family uint8) ([]*netlink.Socket, error) {
	for try := 1; ; try++ {
		socks, err := h.SocketDiagTCP(family)
		switch {
		case err == nil, errors.Is(err, netlink.ErrDumpInterrupted) && try == dumpRetries:
			return socks, nil
		case !errors.Is(err, netlink.ErrDumpInterrupted):
			return nil, fmt.Errorf("audit: listing TCP sockets (sock_diag): %w", err)
		}
	}
}

// addrPort turns sock_diag's address into a netip.AddrPort, IPv4-mapped
// IPv6 addresses unmapped.
func addrPort(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

// report calls progress, if not nil, with p.
func report(progress func(Progress), p Progress) {
	if progress != nil {
		progress(p)
	}
}
