//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

// Package sockopts reads a socket's keepalive options with its own
// getsockopt calls, independently of the keepalive package, so that tests
// can check what the library set against what the kernel reports. Each
// system's file names its options and converts their units.
package sockopts

import (
	"errors"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Values is what getsockopt reports for a socket, in the units of
// keepalive.Config. A field is zero where the system has no such option.
type Values struct {
	KeepAlive   bool          // SO_KEEPALIVE, as set on the socket
	Idle        time.Duration // TCP_KEEPIDLE (TCP_KEEPALIVE on macOS)
	Interval    time.Duration // TCP_KEEPINTVL
	Count       int           // TCP_KEEPCNT
	UserTimeout time.Duration // TCP_USER_TIMEOUT, TCP_RXT_CONNDROPTIME on macOS, TCP_MAXUNACKTIME on FreeBSD; zero on a Multipath TCP socket, which has none
	// MPTCP reports SO_PROTOCOL == IPPROTO_MPTCP (Linux).
	MPTCP bool
}

// Read reads SO_KEEPALIVE and the system's keepalive options and user
// timeout of the socket behind sc, a listening one included. It asserts
// nothing, so it may run on any goroutine.
func Read(sc syscall.Conn) (Values, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return Values{}, err
	}
	var v Values
	var g getter
	err = rc.Control(func(fd uintptr) {
		g.fd = int(fd)
		v = read(&g)
	})
	if err != nil {
		return Values{}, err
	}
	return v, errors.Join(g.errs...)
}

// getter reads integer options of one socket and collects the errors.
type getter struct {
	fd   int
	errs []error
}

// int reads the option, and records the error if it fails.
func (g *getter) int(level, opt int) int {
	n, err := unix.GetsockoptInt(g.fd, level, opt)
	if err != nil {
		g.errs = append(g.errs, err)
	}
	return n
}

// keepAlive reads SO_KEEPALIVE.
func (g *getter) keepAlive() bool {
	return g.int(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
}
