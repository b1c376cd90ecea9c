package keepalive

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"
)

// The files behind the retransmission timeout of a socket without a user
// timeout (man 7 tcp): the number of retransmissions, and the largest
// retransmission timeout (since Linux 6.15; 120 s before).
const (
	retriesSysctl = "/proc/sys/net/ipv4/tcp_retries2"
	rtoMaxSysctl  = "/proc/sys/net/ipv4/tcp_rto_max_ms"
)

// userTimeoutEndsProbes reports that a user timeout, once passed, ends an
// idle connection whose keepalive probes go unanswered, whatever Count says
// (net/ipv4/tcp_timer.c, tcp_keepalive_timer).
const userTimeoutEndsProbes = true

// backoffLimit reports false: a Linux socket always has an interval and a
// count, its own or the sysctls'.
func backoffLimit(time.Duration) (time.Duration, bool) { return 0, false }

// The retransmission timeouts the kernel models its give-up time on
// (include/net/tcp.h: TCP_RTO_MIN, and TCP_RTO_MAX, which is the default of
// net.ipv4.tcp_rto_max_ms since Linux 6.15).
const (
	rtoMin        = 200 * time.Millisecond
	defaultRTOMax = 120 * time.Second
)

// retransmitTimeout returns the sum of retries+1 retransmission timeouts
// that start at rtoMin and double up to rtoMax.
func retransmitTimeout(retries int, rtoMax time.Duration) time.Duration {
	var sum time.Duration
	rto := min(rtoMin, rtoMax)
	n := int64(max(retries, 0)) + 1
	for ; n > 0 && rto < rtoMax; n-- {
		sum += rto
		rto = min(2*rto, rtoMax)
	}
	if n > int64(math.MaxInt64-sum)/int64(rtoMax) {
		return math.MaxInt64
	}
	return sum + time.Duration(n)*rtoMax
}

func retransmitLimit() (time.Duration, error) {
	retries, err := readSysctl(retriesSysctl)
	if err != nil {
		return 0, err
	}
	rtoMax := defaultRTOMax
	if ms, err := readSysctl(rtoMaxSysctl); err == nil {
		if ms <= 0 {
			return 0, fmt.Errorf("keepalive: %s: %d is not a positive number of milliseconds", rtoMaxSysctl, ms)
		}
		rtoMax = time.Duration(ms) * time.Millisecond
	} else if !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	return retransmitTimeout(retries, rtoMax), nil
}

func sysctlConf(c Config) (string, error) {
	var b strings.Builder
	if s := c.String(); s != "" {
		fmt.Fprintf(&b, "# TCP keepalive: %s\n", s)
	} else {
		b.WriteString("# TCP keepalive: the zero Config, which leaves every system default\n")
	}
	for _, s := range sysctls {
		name := strings.ReplaceAll(strings.TrimPrefix(s.path, "/proc/sys/"), "/", ".")
		v := c.get(s.o)
		if v == 0 {
			fmt.Fprintf(&b, "# %s is zero: %s is left as it is\n", optionField[s.o], name)
			continue
		}
		fmt.Fprintf(&b, "%s = %d\n", name, v/int64(max(sockopts[s.o].unit, 1)))
	}
	if c.UserTimeout != 0 {
		fmt.Fprintf(&b, "# UserTimeout %s has no sysctl: TCP_USER_TIMEOUT is set on each socket only\n", appendDuration(nil, c.UserTimeout))
	}
	if c.Off {
		b.WriteString("# Off has no sysctl: keepalive is turned on and off by each socket\n")
	}
	return b.String(), nil
}
