//go:build darwin || freebsd || netbsd || openbsd

package keepalive

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// The systems whose defaults are sysctls (macOS, FreeBSD, NetBSD, OpenBSD;
// DragonFly reads a new socket) name them in a table of sysctlDefaults,
// read here.

// sysctlDefault names the sysctl that holds the system default of an
// option, and the unit it counts in.
type sysctlDefault struct {
	o    option
	name string
	unit time.Duration
	// optional marks a sysctl that older kernels lack; the default is
	// zero there.
	optional bool
}

// readSysctls reads the system defaults that table names.
func readSysctls(table []sysctlDefault) (Config, error) {
	var c Config
	for _, s := range table {
		n, err := sysctlInt(s.name)
		if s.optional && errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return Config{}, err
		}
		c = c.with(s.o, n*int64(s.unit))
	}
	return c, nil
}
