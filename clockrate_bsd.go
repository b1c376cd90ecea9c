//go:build dragonfly || freebsd || netbsd

package keepalive

import (
	"sync"

	"golang.org/x/sys/unix"
)

// clockHz returns the kernel's clock rate, in ticks a second, from
// kern.clockrate, for the systems whose TCP timers count its ticks (FreeBSD,
// NetBSD, DragonFly). Where it cannot be read it returns 1000, higher than
// these systems' usual rate, which makes the limits derived from it smaller
// than the real ones, not larger.
var clockHz = sync.OnceValue(func() int64 {
	ci, err := unix.SysctlClockinfo("kern.clockrate")
	if err != nil || ci.Hz <= 0 {
		return 1000
	}
	return int64(ci.Hz)
})
