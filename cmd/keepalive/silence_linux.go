package main

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// silence returns how long conn has received nothing from its peer, not
// even the answer to a keepalive probe: the time the kernel counts a
// vanished peer's detection from (net/ipv4/tcp_timer.c,
// keepalive_time_elapsed), the lesser of TCP_INFO's tcpi_last_data_recv and
// tcpi_last_ack_recv. ok is false when it cannot be read.
func silence(conn net.Conn) (d time.Duration, ok bool) {
	sc, isSC := conn.(syscall.Conn)
	if !isSC {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return 0, false
	}
	return time.Duration(min(info.Last_data_recv, info.Last_ack_recv)) * time.Millisecond, true
}
