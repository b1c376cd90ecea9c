//go:build unix

package keepalive

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// sockopt is an integer socket option and the unit of its value.
type sockopt struct {
	level, opt int
	// unit is the unit of a duration's value; zero for a count or a
	// flag.
	unit time.Duration
}

// set writes v, in Config.get's units, to the option on fd.
func (so sockopt) set(fd uintptr, v int64) error {
	if so.unit != 0 {
		v /= int64(so.unit)
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(int(fd), so.level, so.opt, int(v)))
}

// get reads the option on fd, in Config.get's units.
func (so sockopt) get(fd uintptr) (int64, error) {
	n, err := unix.GetsockoptInt(int(fd), so.level, so.opt)
	if err != nil {
		return 0, os.NewSyscallError("getsockopt", err)
	}
	if so.unit != 0 {
		return int64(n) * int64(so.unit), nil
	}
	return int64(n), nil
}
