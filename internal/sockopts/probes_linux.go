package sockopts

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Probes reads how many keepalive probes are out unanswered on the socket
// behind sc: tcp_info's tcpi_probes.
func Probes(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var info *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) { info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		return 0, err
	}
	if gerr != nil {
		return 0, os.NewSyscallError("getsockopt TCP_INFO", gerr)
	}
	return int(info.Probes), nil
}

// DropAll attaches to the socket behind sc a filter that drops every
// packet it receives, so that its peer's keepalive probes go unanswered,
// as those to a vanished peer do.
func DropAll(sc syscall.Conn) error {
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	filter := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &unix.SockFprog{Len: 1, Filter: &filter[0]})
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt SO_ATTACH_FILTER", serr)
}
