//go:build unix

package sockopts

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// Read reads SO_KEEPALIVE and the system's keepalive options and user
// timeout of the socket behind sc, a listening one included; each
// system's file names its options and converts their units. It asserts
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
