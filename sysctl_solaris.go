package keepalive

import (
	"fmt"
	"time"
)

// userTimeoutEndsProbes is false: TCP_ABORT_THRESHOLD bounds retransmission
// only; the keepalive timer ends probes at its own threshold (illumos
// tcp_timers.c, tcp_keepalive_timer).
const userTimeoutEndsProbes = false

// backoffLimit reads the system's keepalive abort threshold and largest
// retransmission timeout from a new socket, for backoffDetection.
func backoffLimit(idle time.Duration) (time.Duration, bool) {
	var abort, rto int64
	err := withNewSocket(func(fd uintptr) error {
		var err error
		if abort, err = keepAliveAbortThreshold.get(fd); err != nil {
			return err
		}
		rto, err = tcpRTOMax.get(fd)
		return err
	})
	if err != nil {
		return Never, true
	}
	return backoffDetection(idle, time.Duration(abort), time.Duration(rto)), true
}

// retransmitLimit reads TCP_ABORT_THRESHOLD from a new socket: the ipadm
// property _ip_abort_interval of the caller's zone.
func retransmitLimit() (time.Duration, error) {
	var v int64
	err := withNewSocket(func(fd uintptr) error {
		var err error
		v, err = getOption(fd, optUserTimeout)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("keepalive: reading TCP_ABORT_THRESHOLD from a new socket: %w", err)
	}
	return time.Duration(v), nil
}

func sysctlConf(Config) (string, error) {
	return "", fmt.Errorf("keepalive: %w", unsupported("writing sysctl lines",
		"the system keeps its keepalive defaults in the ipadm properties _keepalive_interval and _keepalive_abort_interval of tcp, not in sysctls"))
}
