//go:build !linux && !solaris

package keepalive

import (
	"fmt"
	"time"
)

// userTimeoutEndsProbes is false: only Linux is known to end an idle
// connection at its user timeout rather than after Count probes.
const userTimeoutEndsProbes = false

// backoffLimit reports false: where the platform sets Interval and Count, a
// socket always has an interval and a count, its own or the system's.
func backoffLimit(time.Duration) (time.Duration, bool) { return 0, false }

func retransmitLimit() (time.Duration, error) {
	return 0, fmt.Errorf("keepalive: %w", unsupported("reading the retransmission timeout", "it is modelled on Linux's sysctls only"))
}

func sysctlConf(Config) (string, error) {
	return "", fmt.Errorf("keepalive: %w", unsupported("writing sysctl lines", "they name Linux's sysctls"))
}
