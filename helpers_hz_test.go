//go:build dragonfly || freebsd || netbsd

package keepalive_test

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// clockRate reads the kernel's clock rate from kern.clockrate, for the
// systems whose TCP timers count its ticks and whose limits follow from it.
func clockRate() (int64, error) {
	ci, err := unix.SysctlClockinfo("kern.clockrate")
	if err != nil {
		return 0, fmt.Errorf("sysctl kern.clockrate: %w", err)
	}
	if ci.Hz <= 0 {
		return 0, fmt.Errorf("sysctl kern.clockrate: hz %d", ci.Hz)
	}
	return int64(ci.Hz), nil
}
