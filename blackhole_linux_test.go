package keepalive_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// blackholeFilter is a classic BPF program of one instruction, "ret #0": a
// socket it is attached to keeps no byte of any packet it receives.
var blackholeFilter = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

// blackhole makes conn's end of a connection vanish without closing
// anything: no FIN, no RST, no more ACKs. Keepalive is turned off on it, so
// it sends no probes of its own, and a drop-all socket filter
// (SO_ATTACH_FILTER) discards every segment that arrives for it before TCP
// sees it, so keepalive probes, data and resets from the other end go
// unanswered. At cleanup, before the connection is closed, SO_LINGER 0
// makes the close send a reset instead of a FIN that would be retransmitted
// to a peer that cannot acknowledge it.
//
// Linux lets a process attach a classic filter to its own socket without
// privilege, but some kernels refuse it (EPERM) without CAP_NET_ADMIN; the
// test is then skipped with the reason.
func blackhole(t testing.TB, conn net.Conn) {
	t.Helper()
	silence(t, conn, "SO_ATTACH_FILTER", attachBlackholeFilter)
}

func attachBlackholeFilter(fd int) error {
	prog := unix.SockFprog{Len: uint16(len(blackholeFilter)), Filter: &blackholeFilter[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}

// skipUnlessBlackhole skips t, with the reason, if this process may not
// attach a socket filter, as blackhole does.
func skipUnlessBlackhole(t testing.TB) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, os.NewSyscallError("socket", err))
	defer unix.Close(fd)
	skipIfDenied(t, "SO_ATTACH_FILTER", attachBlackholeFilter(fd))
}

func skipIfDenied(t testing.TB, name string, err error) {
	t.Helper()
	if errors.Is(err, os.ErrPermission) {
		skipOutsideCI(t, "cannot make a peer vanish: setsockopt %s: %v (this kernel wants CAP_NET_ADMIN for it)", name, err)
	}
	require.NoError(t, os.NewSyscallError("setsockopt "+name, err))
}

// blackholeAll makes every connection in conns vanish as blackhole does,
// and says how. The kernel compiles each classic filter on its own, which
// takes a few hundred microseconds a socket; when the process may load a
// BPF program (CAP_BPF), one program that drops everything is loaded
// instead and attached to every socket with SO_ATTACH_BPF, which takes a
// few microseconds, so that thousands of peers vanish at nearly the same
// moment.
func blackholeAll(t testing.TB, conns []net.Conn) string {
	t.Helper()
	prog, err := loadDropProgram()
	if err != nil {
		for _, conn := range conns {
			blackhole(t, conn)
		}
		return fmt.Sprintf("a classic filter each (%v)", err)
	}
	defer unix.Close(prog)
	for _, conn := range conns {
		silence(t, conn, "SO_ATTACH_BPF", func(fd int) error {
			return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ATTACH_BPF, prog)
		})
	}
	return "one shared BPF program"
}

// silence turns keepalive off on conn, runs attach on its descriptor to
// attach a drop-all filter, and arranges for a reset at close.
func silence(t testing.TB, conn net.Conn, name string, attach func(fd int) error) {
	t.Helper()
	require.NoError(t, keepalive.Disable(conn))
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "want *net.TCPConn, got %T", conn)
	rc, err := tc.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { serr = attach(int(fd)) }))
	skipIfDenied(t, name, serr)
	t.Cleanup(func() { tc.SetLinger(0) })
}

// bpfInsn is struct bpf_insn (Linux include/uapi/linux/bpf.h).
type bpfInsn struct {
	code uint8
	regs uint8 // dst_reg:4, src_reg:4
	off  int16
	imm  int32
}

// bpfProgLoadAttr is the start of union bpf_attr as BPF_PROG_LOAD reads
// it; the kernel takes the fields it is not given as zero.
type bpfProgLoadAttr struct {
	progType    uint32
	insnCnt     uint32
	insns       uint64
	license     uint64
	logLevel    uint32
	logSize     uint32
	logBuf      uint64
	kernVersion uint32
	progFlags   uint32
}

// dropProgram is the BPF socket filter program "r0 = 0; exit": it drops
// every packet. It and its license string are package variables, which
// never move, because the kernel reads them through addresses held as
// integers.
var (
	dropProgram = [...]bpfInsn{
		{code: unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_K}, // r0 = 0
		{code: unix.BPF_JMP | unix.BPF_EXIT},               // return r0
	}
	dropLicense = [...]byte{'M', 'I', 'T', 0}
)

// loadDropProgram loads dropProgram and returns its descriptor. With
// unprivileged BPF off, the kernel's default, it needs CAP_BPF; the error
// then wraps os.ErrPermission.
func loadDropProgram() (int, error) {
	attr := bpfProgLoadAttr{
		progType: unix.BPF_PROG_TYPE_SOCKET_FILTER,
		insnCnt:  uint32(len(dropProgram)),
		insns:    uint64(uintptr(unsafe.Pointer(&dropProgram[0]))),
		license:  uint64(uintptr(unsafe.Pointer(&dropLicense[0]))),
	}
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
	if errno != 0 {
		return -1, os.NewSyscallError("bpf BPF_PROG_LOAD", errno)
	}
	return int(fd), nil
}

// sides are the two ends a Config can be applied to: a connection dialed
// through keepalive.Dialer and one accepted from keepalive.Listen.
var sides = []string{"dialed", "accepted"}

// configuredPair returns a loopback connection whose end on side carries
// c and whose other end, the peer, is plain TCP with keepalive off. Both
// are closed at cleanup.
func configuredPair(t testing.TB, c keepalive.Config, side string) (configured, peer net.Conn) {
	t.Helper()
	switch side {
	case "dialed":
		var plain net.ListenConfig
		plain.SetMultipathTCP(false)
		ln := listen(t, &keepalive.ListenConfig{NetListenConfig: &plain})
		d := &keepalive.Dialer{Config: c}
		configured, peer = pair(t, ln, d.DialContext)
	case "accepted":
		ln := listen(t, &keepalive.ListenConfig{Config: c})
		peer, configured = pair(t, ln, plainDial)
	default:
		t.Fatalf("unknown side %q", side)
	}
	require.Equal(t, expect(t, c), readKernel(t, configured), "configured end")
	require.NoError(t, keepalive.Disable(peer))
	return configured, peer
}

// lastExchange sends a byte from configured to peer and one back, and
// waits until both ends have every byte acknowledged, so that neither has
// data in flight and the configured end is left to keepalive alone. It
// returns the time just before the peer sent its byte: the configured end
// last received something after that. It logs how long the byte took to
// be read, the uncertainty of that clock.
func lastExchange(t testing.TB, configured, peer net.Conn) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	require.NoError(t, configured.SetDeadline(deadline))
	require.NoError(t, peer.SetDeadline(deadline))
	b := make([]byte, 1)
	_, err := configured.Write([]byte{'?'})
	require.NoError(t, err)
	_, err = peer.Read(b)
	require.NoError(t, err)
	sent := time.Now()
	_, err = peer.Write([]byte{'!'})
	require.NoError(t, err)
	_, err = configured.Read(b)
	require.NoError(t, err)
	read := time.Since(sent)
	require.NoError(t, configured.SetDeadline(time.Time{}))
	require.NoError(t, peer.SetDeadline(time.Time{}))
	waitAcked(t, configured)
	waitAcked(t, peer)
	t.Logf("last byte read %v after the peer began to send it", read)
	return sent
}

// waitAcked waits until the kernel has no unacknowledged data queued on
// conn (SIOCOUTQ is zero).
func waitAcked(t testing.TB, conn net.Conn) {
	t.Helper()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		var n int
		var ierr error
		require.NoError(t, rc.Control(func(fd uintptr) {
			n, ierr = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ)
		}))
		require.NoError(t, os.NewSyscallError("ioctl SIOCOUTQ", ierr))
		if n == 0 {
			return
		}
		require.Less(t, time.Since(start), 5*time.Second, "%d bytes still unacknowledged", n)
	}
}

// tcpInfo reads TCP_INFO of conn's socket.
func tcpInfo(t testing.TB, conn net.Conn) *unix.TCPInfo {
	t.Helper()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var info *unix.TCPInfo
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}))
	require.NoError(t, os.NewSyscallError("getsockopt TCP_INFO", gerr))
	return info
}

// tcpEstablished is TCP_ESTABLISHED, the state TCP_INFO reports for an
// open connection (Linux include/net/tcp_states.h).
const tcpEstablished = 1

// tcpInfoMs converts a TCP_INFO field in milliseconds to a Duration.
func tcpInfoMs(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// detectConfig formats c for the "detect:" lines the tests log.
func detectConfig(c keepalive.Config) string {
	s := fmt.Sprintf("idle=%v,interval=%v,count=%d", c.Idle, c.Interval, c.Count)
	if c.UserTimeout != 0 {
		s += fmt.Sprintf(",user-timeout=%v", c.UserTimeout)
	}
	return s
}

// TestBlackholeSilencesPeer shows that a drop-all socket filter stops the
// kernel from answering keepalive probes: the socket filter runs when a
// segment reaches its socket, before TCP processes it, so the ACK a probe
// asks for is never generated. The same connection without the filter
// answers every probe. Both filters are covered: the classic one blackhole
// attaches and the shared program blackholeAll attaches where it may.
func TestBlackholeSilencesPeer(t *testing.T) {
	t.Parallel()
	c := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 5}
	const wait = 2500 * time.Millisecond
	answering, peer := configuredPair(t, c, "dialed")
	lastExchange(t, answering, peer)
	classic, peer := configuredPair(t, c, "dialed")
	lastExchange(t, classic, peer)
	blackhole(t, peer)
	shared, peer := configuredPair(t, c, "dialed")
	lastExchange(t, shared, peer)
	prog, err := loadDropProgram()
	if err == nil {
		assert.Equal(t, "one shared BPF program", blackholeAll(t, []net.Conn{peer}))
		unix.Close(prog)
	} else if !errors.Is(err, os.ErrPermission) {
		require.NoError(t, err)
	}
	time.Sleep(wait)

	for _, tt := range []struct {
		name     string
		conn     net.Conn
		vanished bool
	}{
		{"answering", answering, false},
		{"classic filter", classic, true},
		{"shared program", shared, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.conn == shared && err != nil {
				skipOutsideCI(t, "cannot load a BPF program here: %v", err)
			}
			info := tcpInfo(t, tt.conn)
			t.Logf("%s after %v idle: probes unanswered=%d, last ACK %v ago, last data %v ago, state %d",
				tt.name, wait, info.Probes, tcpInfoMs(info.Last_ack_recv), tcpInfoMs(info.Last_data_recv), info.State)
			assert.Equal(t, uint8(tcpEstablished), info.State, "state")
			assert.GreaterOrEqual(t, tcpInfoMs(info.Last_data_recv), wait, "last data received")
			if tt.vanished {
				// Probes went out at Idle and Idle+Interval; none was
				// answered.
				assert.GreaterOrEqual(t, info.Probes, uint8(1), "unanswered probes")
				assert.GreaterOrEqual(t, tcpInfoMs(info.Last_ack_recv), c.Idle+c.Interval, "last ACK received")
			} else {
				// A probe goes out an Idle after the last answer and is
				// answered at once.
				assert.Zero(t, info.Probes, "unanswered probes")
				assert.Less(t, tcpInfoMs(info.Last_ack_recv), c.Idle+c.Interval/2, "last ACK received")
			}
		})
	}
}
