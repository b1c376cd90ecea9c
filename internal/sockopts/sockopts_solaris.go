package sockopts

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Values is what getsockopt reports for a socket on illumos and Solaris.
type Values struct {
	KeepAlive bool          // SO_KEEPALIVE
	Idle      time.Duration // TCP_KEEPALIVE_THRESHOLD, in milliseconds
	// Interval and Count are TCP_KEEPINTVL and TCP_KEEPCNT, zero where
	// the socket sets neither; IntervalCount reports that the system has
	// them (illumos, Oracle Solaris 11.4 and later).
	Interval      time.Duration
	Count         int
	IntervalCount bool
	// AbortThreshold is TCP_KEEPALIVE_ABORT_THRESHOLD: how long after Idle
	// unanswered probes drop the connection.
	AbortThreshold time.Duration
	// UserTimeout is TCP_ABORT_THRESHOLD: how long retransmission goes on.
	UserTimeout time.Duration
	// Protocol is SO_PROTOTYPE.
	Protocol int
}

// Read reads SO_KEEPALIVE, TCP_KEEPALIVE_THRESHOLD, TCP_KEEPINTVL,
// TCP_KEEPCNT (where the system has them), TCP_KEEPALIVE_ABORT_THRESHOLD,
// TCP_ABORT_THRESHOLD and SO_PROTOTYPE of the socket behind sc, a listening
// one included. It asserts nothing, so it may run on any goroutine.
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
		v.Idle = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPALIVE_THRESHOLD)) * time.Millisecond
		interval, ierr := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, tcpKeepIntvl)
		count, cerr := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, tcpKeepCnt)
		switch {
		case errors.Is(ierr, unix.ENOPROTOOPT) && errors.Is(cerr, unix.ENOPROTOOPT):
			// Solaris before 11.4 has neither.
		case ierr != nil || cerr != nil:
			errs = append(errs, ierr, cerr)
		default:
			v.IntervalCount = true
			v.Interval = time.Duration(interval) * time.Second
			v.Count = count
		}
		v.AbortThreshold = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_KEEPALIVE_ABORT_THRESHOLD)) * time.Millisecond
		v.UserTimeout = time.Duration(get(fd, unix.IPPROTO_TCP, unix.TCP_ABORT_THRESHOLD)) * time.Millisecond
		v.Protocol = get(fd, unix.SOL_SOCKET, unix.SO_PROTOTYPE)
	})
	if err != nil {
		return Values{}, err
	}
	return v, errors.Join(errs...)
}
