package keepalive

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Linux's options (man 7 socket, man 7 tcp) and their limits
// (include/net/tcp.h: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT;
// TCP_USER_TIMEOUT takes a non-negative int of milliseconds). Linux cannot
// unset an option: a zero field is written as the sysctl's value, except the
// user timeout, whose zero is none.
var linux = [numOptions]sockopt{
	optIdle:        {name: "TCP_KEEPIDLE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: time.Second, min: 1, max: 32767},
	optInterval:    {name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second, min: 1, max: 32767},
	optCount:       {name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT, min: 1, max: 127},
	optUserTimeout: {name: "TCP_USER_TIMEOUT", level: unix.IPPROTO_TCP, opt: unix.TCP_USER_TIMEOUT, unit: time.Millisecond, min: 1, max: math.MaxInt32, zeroIsDefault: true},
	optKeepAlive:   soKeepAlive,
}

func options() *[numOptions]sockopt { return &linux }

// acceptInherits reports that a socket accepted from a listening socket
// starts with the listening socket's keepalive options and user timeout
// (net/ipv4/tcp_minisocks.c copies them into the child), with Multipath TCP
// too.
const acceptInherits = true

// defaultsReadable reports that systemDefaults reads the sysctls.
const defaultsReadable = true

// userTimeoutEndsProbes reports that a user timeout, once passed, ends an
// idle connection whose keepalive probes go unanswered, whatever Count says
// (net/ipv4/tcp_timer.c, tcp_keepalive_timer).
const userTimeoutEndsProbes = true

func setOption(fd uintptr, o option, c Config) error {
	err := linux[o].set(fd, c.get(o))
	if o == optUserTimeout && errors.Is(err, unix.ENOPROTOOPT) && isMultipath(fd) {
		return fmt.Errorf("a Multipath TCP socket has no user timeout: %w", err)
	}
	return err
}

func getOption(fd uintptr, o option) (int64, error) {
	v, err := linux[o].get(fd)
	if o == optUserTimeout && errors.Is(err, unix.EOPNOTSUPP) && isMultipath(fd) {
		// A Multipath TCP socket has no user timeout: none is in force.
		return 0, nil
	}
	return v, err
}

func checkCombination(Config) *FieldError { return nil }

// isMultipath reports whether fd is a Multipath TCP socket.
func isMultipath(fd uintptr) bool {
	p, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	return err == nil && p == unix.IPPROTO_MPTCP
}

// checkTCP reports why fd is not a TCP (or Multipath TCP) socket.
func checkTCP(fd uintptr) error {
	p, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	switch {
	case errors.Is(err, unix.ENOTSOCK):
		return errors.New("not a socket")
	case err != nil:
		return os.NewSyscallError("getsockopt SO_PROTOCOL", err)
	case p != unix.IPPROTO_TCP && p != unix.IPPROTO_MPTCP:
		return fmt.Errorf("socket protocol %d", p)
	}
	return nil
}

// sysctls holds the files of the system-wide defaults (man 7 tcp), in
// seconds for the durations.
var sysctls = [...]struct {
	o    option
	path string
}{
	{optIdle, "/proc/sys/net/ipv4/tcp_keepalive_time"},
	{optInterval, "/proc/sys/net/ipv4/tcp_keepalive_intvl"},
	{optCount, "/proc/sys/net/ipv4/tcp_keepalive_probes"},
}

// systemDefaults reads the sysctls of the caller's network namespace. By
// default there is no user timeout.
func systemDefaults() (Config, error) {
	var c Config
	for _, s := range sysctls {
		n, err := readSysctl(s.path)
		if err != nil {
			return Config{}, err
		}
		c = c.with(s.o, int64(n)*linux[s.o].valueUnit())
	}
	return c, nil
}

// readSysctl reads the integer in the file at path.
func readSysctl(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("keepalive: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("keepalive: %s: %w", path, err)
	}
	return n, nil
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
		fmt.Fprintf(&b, "%s = %d\n", name, v/linux[s.o].valueUnit())
	}
	if c.UserTimeout != 0 {
		fmt.Fprintf(&b, "# UserTimeout %s has no sysctl: TCP_USER_TIMEOUT is set on each socket only\n", appendDuration(nil, c.UserTimeout))
	}
	if c.Off {
		b.WriteString("# Off has no sysctl: keepalive is turned on and off by each socket\n")
	}
	return b.String(), nil
}

// The files behind the retransmission timeout of a socket without a user
// timeout (man 7 tcp): the number of retransmissions, and the largest
// retransmission timeout (since Linux 6.15; 120 s before).
const (
	retriesSysctl = "/proc/sys/net/ipv4/tcp_retries2"
	rtoMaxSysctl  = "/proc/sys/net/ipv4/tcp_rto_max_ms"
)

// The retransmission timeouts the kernel models its give-up time on
// (include/net/tcp.h: TCP_RTO_MIN, and TCP_RTO_MAX, which is the default of
// net.ipv4.tcp_rto_max_ms since Linux 6.15).
const (
	rtoMin        = 200 * time.Millisecond
	defaultRTOMax = 120 * time.Second
)

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

// backoffLimit reports false: a Linux socket always has an interval and a
// count, its own or the sysctls'.
func backoffLimit(time.Duration) (time.Duration, bool) { return 0, false }
