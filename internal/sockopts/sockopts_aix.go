package sockopts

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Values is what getsockopt reports for a socket on AIX.
type Values struct {
	KeepAlive bool          // SO_KEEPALIVE
	Idle      time.Duration // TCP_KEEPIDLE, in seconds
	Interval  time.Duration // TCP_KEEPINTVL, in seconds
	Count     int           // TCP_KEEPCNT
}

// Read reads SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT of
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
	})
	if err != nil {
		return Values{}, err
	}
	return v, errors.Join(errs...)
}
