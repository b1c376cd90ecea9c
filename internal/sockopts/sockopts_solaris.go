package sockopts

import (
	"errors"
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

// read reads the options of illumos and Solaris: milliseconds, and
// seconds for TCP_KEEPINTVL.
func read(g *getter) Values {
	v := Values{
		KeepAlive: g.keepAlive(),
		Idle:      time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPALIVE_THRESHOLD)) * time.Millisecond,
	}
	interval, ierr := unix.GetsockoptInt(g.fd, unix.IPPROTO_TCP, tcpKeepIntvl)
	count, cerr := unix.GetsockoptInt(g.fd, unix.IPPROTO_TCP, tcpKeepCnt)
	switch {
	case errors.Is(ierr, unix.ENOPROTOOPT) && errors.Is(cerr, unix.ENOPROTOOPT):
		// Solaris before 11.4 has neither.
	case ierr != nil || cerr != nil:
		g.errs = append(g.errs, ierr, cerr)
	default:
		v.IntervalCount = true
		v.Interval = time.Duration(interval) * time.Second
		v.Count = count
	}
	v.AbortThreshold = time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPALIVE_ABORT_THRESHOLD)) * time.Millisecond
	v.UserTimeout = time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_ABORT_THRESHOLD)) * time.Millisecond
	v.Protocol = g.int(unix.SOL_SOCKET, unix.SO_PROTOTYPE)
	return v
}
