package sockopts

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Values is what getsockopt reports for a socket.
type Values struct {
	KeepAlive   bool          // SO_KEEPALIVE
	Idle        time.Duration // TCP_KEEPIDLE
	Interval    time.Duration // TCP_KEEPINTVL
	Count       int           // TCP_KEEPCNT
	UserTimeout time.Duration // TCP_USER_TIMEOUT; zero on a Multipath TCP socket, which has none
	// MPTCP reports SO_PROTOCOL == IPPROTO_MPTCP.
	MPTCP bool
}

// Read reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT,
// SO_PROTOCOL and, unless the socket is Multipath TCP, TCP_USER_TIMEOUT of
// the socket behind sc, a listening one included. It asserts nothing, so it
// may run on any goroutine.
func Read(sc syscall.Conn) (Values, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return Values{}, err
	}
	var v Values
	var errs []error
	get := func(fd, level, opt int) int {
		n, err := unix.GetsockoptInt(fd, level, opt)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	err = rc.Control(func(fdp uintptr) {
		fd := int(fdp)
		v.KeepAlive = get(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
		v.Idle = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second
		v.Interval = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second
		v.Count = get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT)
		v.MPTCP = get(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL) == unix.IPPROTO_MPTCP
		if !v.MPTCP {
			v.UserTimeout = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
		}
	})
	if err != nil {
		return Values{}, err
	}
	return v, errors.Join(errs...)
}
