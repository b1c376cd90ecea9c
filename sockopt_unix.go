//go:build unix

package keepalive

import (
	"os"

	"golang.org/x/sys/unix"
)

// soKeepAlive is SO_KEEPALIVE, the same on every Unix.
var soKeepAlive = sockopt{name: "SO_KEEPALIVE", level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE}

// set writes v, in Config.get's units, to the option on fd.
func (so *sockopt) set(fd uintptr, v int64) error {
	if so.unit != 0 {
		v /= int64(so.unit)
	}
	return os.NewSyscallError("setsockopt", unix.SetsockoptInt(int(fd), so.level, so.opt, int(v)))
}

// get reads the option on fd, in Config.get's units.
func (so *sockopt) get(fd uintptr) (int64, error) {
	n, err := unix.GetsockoptInt(int(fd), so.level, so.opt)
	if err != nil {
		return 0, os.NewSyscallError("getsockopt", err)
	}
	return int64(n) * so.valueUnit(), nil
}
