package audit

import (
	"fmt"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// getConfig and setConfig are this package's one use of the library to
// read and set a socket it holds only as a descriptor.
//
// getConfig reads with getsockopt itself until the library's Get takes a
// syscall.RawConn (Get(sock any) (Config, error)); it then becomes
// keepalive.Get(rc), with enabled = !c.Off. setConfig goes through
// Config.Control, the library's setter for a RawConn, until Set(sock any,
// c) takes one.

// getConfig returns whether keepalive is on and the values in force on the
// socket behind rc: SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT
// and TCP_USER_TIMEOUT.
func getConfig(rc syscall.RawConn) (enabled bool, c keepalive.Config, err error) {
	var v [5]int
	opts := [5]struct {
		name       string
		level, opt int
	}{
		{"SO_KEEPALIVE", unix.SOL_SOCKET, unix.SO_KEEPALIVE},
		{"TCP_KEEPIDLE", unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
		{"TCP_KEEPINTVL", unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
		{"TCP_KEEPCNT", unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
		{"TCP_USER_TIMEOUT", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
	}
	cerr := rc.Control(func(fd uintptr) {
		for i, o := range opts {
			if v[i], err = unix.GetsockoptInt(int(fd), o.level, o.opt); err != nil {
				err = fmt.Errorf("audit: %s: %w", o.name, os.NewSyscallError("getsockopt", err))
				return
			}
		}
	})
	if cerr != nil {
		return false, keepalive.Config{}, cerr
	}
	if err != nil {
		return false, keepalive.Config{}, err
	}
	return v[0] != 0, keepalive.Config{
		Idle:        time.Duration(v[1]) * time.Second,
		Interval:    time.Duration(v[2]) * time.Second,
		Count:       v[3],
		UserTimeout: time.Duration(v[4]) * time.Millisecond,
	}, nil
}

// setConfig sets c on the socket behind rc: keepalive on, and each
// non-zero field.
func setConfig(rc syscall.RawConn, c keepalive.Config) error {
	return c.Control("tcp", "", rc)
}
