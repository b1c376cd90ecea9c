package wine

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// Values is what getsockopt reports for a socket.
type Values = sockopts.Values

// ErrNotHeld is returned by [ReadSocket] when the process holds no
// descriptor of the socket.
var ErrNotHeld = errors.New("the process holds no descriptor of the socket")

// ReadSocket reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT
// and TCP_USER_TIMEOUT of the TCP socket from local to remote (a zero
// remote: the socket listening on local) that the process pid holds. It
// finds the socket's inode in /proc/net/tcp and tcp6, the descriptor in
// /proc/pid/fd, and reads a duplicate of it taken with pidfd_getfd (Linux
// 5.6+, with ptrace access to pid: root, or the same user under a Yama
// ptrace_scope of 0). Use it only on processes the test started.
func ReadSocket(pid int, local, remote netip.AddrPort) (Values, error) {
	ino, err := socketInode(local, remote)
	if err != nil {
		return Values{}, err
	}
	fd, err := descriptor(pid, ino)
	if err != nil {
		return Values{}, err
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return Values{}, os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return Values{}, os.NewSyscallError("pidfd_getfd", err)
	}
	f := os.NewFile(uintptr(dup), fmt.Sprintf("pid %d fd %d", pid, fd))
	defer f.Close()
	return sockopts.Read(f)
}

// socketInode returns the inode of the TCP socket from local to remote, as
// /proc/net/tcp and /proc/net/tcp6 of the test's network namespace list it.
func socketInode(local, remote netip.AddrPort) (uint64, error) {
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			return 0, err
		}
		ino, found, err := scanTCP(f, local, remote)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", file, err)
		}
		if found {
			return ino, nil
		}
	}
	return 0, fmt.Errorf("no TCP socket %s -> %s", local, remote)
}

// tcpListen is TCP_LISTEN in the st column of /proc/net/tcp.
const tcpListen = 0x0a

// scanTCP finds the socket from local to remote in the lines of
// /proc/net/tcp or tcp6 and returns its inode. An IPv4 address matches its
// IPv4-mapped IPv6 form too, as a dual-stack socket lists it.
func scanTCP(f *os.File, local, remote netip.AddrPort) (ino uint64, found bool, err error) {
	s := bufio.NewScanner(f)
	s.Scan() // the header
	for s.Scan() {
		// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
		fields := strings.Fields(s.Text())
		if len(fields) < 10 {
			continue
		}
		l, err := parseProcAddr(fields[1])
		if err != nil {
			return 0, false, err
		}
		r, err := parseProcAddr(fields[2])
		if err != nil {
			return 0, false, err
		}
		st, err := strconv.ParseUint(fields[3], 16, 8)
		if err != nil {
			return 0, false, err
		}
		if !sameAddr(l, local) {
			continue
		}
		if remote.IsValid() {
			if st == tcpListen || !sameAddr(r, remote) {
				continue
			}
		} else if st != tcpListen {
			continue
		}
		ino, err := strconv.ParseUint(fields[9], 10, 64)
		if err != nil {
			return 0, false, err
		}
		return ino, true, nil
	}
	return 0, false, s.Err()
}

func sameAddr(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// parseProcAddr parses an address of /proc/net/tcp ("0100007F:1F90"): the
// address as 32-bit words in the kernel's byte order, the port in hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	// Each 32-bit word of the address, in network byte order, was printed
	// as a number in the host's byte order.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// descriptor returns the number of a descriptor that process pid holds
// for the socket with inode ino.
func descriptor(pid int, ino uint64) (int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	want := fmt.Sprintf("socket:[%d]", ino)
	for _, e := range ents {
		if link, err := os.Readlink(dir + "/" + e.Name()); err == nil && link == want {
			return strconv.Atoi(e.Name())
		}
	}
	return 0, fmt.Errorf("pid %d, socket inode %d: %w", pid, ino, ErrNotHeld)
}
