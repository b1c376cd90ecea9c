package keepalive

import (
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// SystemDefaults returns the values a socket has when it sets none itself:
// on Linux the sysctls net.ipv4.tcp_keepalive_time, tcp_keepalive_intvl and
// tcp_keepalive_probes of the caller's network namespace. UserTimeout is
// zero: by default there is none. Elsewhere it returns an error wrapping
// [errors.ErrUnsupported].
func SystemDefaults() (Config, error) {
	var v [numOptions]int
	for o, path := range sysctls {
		if o == int(optKeepAlive) || o == int(optUserTimeout) {
			continue
		}
		if path == "" {
			return Config{}, fmt.Errorf("keepalive: system defaults are not readable on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
		}
		n, err := readSysctl(path)
		if err != nil {
			return Config{}, err
		}
		v[o] = n
	}
	return Config{
		Idle:     time.Duration(v[optIdle]) * time.Second,
		Interval: time.Duration(v[optInterval]) * time.Second,
		Count:    v[optCount],
	}, nil
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

// The retransmission timeouts the kernel models its give-up time on
// (include/net/tcp.h: TCP_RTO_MIN, and TCP_RTO_MAX, which is the default of
// net.ipv4.tcp_rto_max_ms since Linux 6.15).
const (
	rtoMin        = 200 * time.Millisecond
	defaultRTOMax = 120 * time.Second
)

// RetransmitTimeout returns the kernel's limit on retransmission for a
// connection without a UserTimeout: on Linux net.ipv4.tcp_retries2 turned
// into time as the kernel does (net/ipv4/tcp_timer.c, tcp_model_timeout),
// the sum of tcp_retries2 + 1 retransmission timeouts that start at 200ms
// and double up to net.ipv4.tcp_rto_max_ms (120s, also on kernels before
// 6.15, which have no such sysctl). With the usual 15 retries that is
// 924.6s.
//
// The kernel closes a connection whose data stays unacknowledged (with
// ETIMEDOUT) at the first retransmission that finds this time passed since
// the first retransmission: later by up to one retransmission timeout,
// which by then may have backed off to tcp_rto_max_ms. A connection with a
// UserTimeout is closed after UserTimeout instead.
//
// The values are those of the caller's network namespace. Elsewhere than
// Linux RetransmitTimeout returns an error wrapping [errors.ErrUnsupported].
func RetransmitTimeout() (time.Duration, error) {
	if retriesSysctl == "" {
		return 0, fmt.Errorf("keepalive: the retransmission timeout is not readable on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
	}
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

// SysctlConf returns the lines of a sysctl configuration file (as for
// /etc/sysctl.d/, see sysctl.conf(5)) that make c's Idle, Interval and Count
// the machine-wide defaults: on Linux net.ipv4.tcp_keepalive_time,
// tcp_keepalive_intvl and tcp_keepalive_probes. A zero field has no line:
// it leaves the system's value as it is. The defaults apply to sockets that
// turn keepalive on and set no values of their own; the sysctls do not turn
// keepalive on.
//
// UserTimeout has no sysctl: TCP_USER_TIMEOUT can only be set on each
// socket. A non-zero UserTimeout, and each zero field, is written as a
// comment line that says so.
//
// The Config is validated first. Elsewhere than Linux SysctlConf returns an
// error wrapping [errors.ErrUnsupported].
func (c Config) SysctlConf() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	if s := c.String(); s != "" {
		fmt.Fprintf(&b, "# TCP keepalive: %s\n", s)
	} else {
		b.WriteString("# TCP keepalive: the zero Config, which leaves every system default\n")
	}
	v := c.values()
	for _, o := range []option{optIdle, optInterval, optCount} {
		path := sysctls[o]
		if path == "" {
			return "", fmt.Errorf("keepalive: %s has no sysctl on %s/%s: %w", optionField[o], runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
		}
		name := strings.ReplaceAll(strings.TrimPrefix(path, "/proc/sys/"), "/", ".")
		if v[o] == 0 {
			fmt.Fprintf(&b, "# %s is zero: %s is left as it is\n", optionField[o], name)
			continue
		}
		fmt.Fprintf(&b, "%s = %d\n", name, v[o])
	}
	if c.UserTimeout != 0 {
		fmt.Fprintf(&b, "# UserTimeout %s has no sysctl: TCP_USER_TIMEOUT is set on each socket only\n", appendDuration(nil, c.UserTimeout))
	}
	return b.String(), nil
}

// orDefaults returns c with each zero field taken from sys.
func (c Config) orDefaults(sys Config) Config {
	if c.Idle == 0 {
		c.Idle = sys.Idle
	}
	if c.Interval == 0 {
		c.Interval = sys.Interval
	}
	if c.Count == 0 {
		c.Count = sys.Count
	}
	if c.UserTimeout == 0 {
		c.UserTimeout = sys.UserTimeout
	}
	return c
}

// DetectionTime returns the longest time a connection with settings c takes
// to declare an idle connection dead once its peer has vanished, counted
// from the last segment the peer sent. Each zero field of c takes its value
// from sys, usually the result of [SystemDefaults].
//
// Without a UserTimeout that is Idle + Interval*Count: the first probe goes
// out after Idle, and the connection is dropped when Count probes have gone
// unanswered. With one, the kernel ignores Count and drops the connection at
// the first probe timer that finds UserTimeout passed and a probe
// unanswered: Idle + Interval*k for the least k of at least 1 that reaches
// UserTimeout (Linux net/ipv4/tcp_timer.c, tcp_keepalive_timer).
func (c Config) DetectionTime(sys Config) time.Duration {
	c = c.orDefaults(sys)
	if c.UserTimeout == 0 {
		return c.Idle + c.Interval*time.Duration(c.Count)
	}
	k := time.Duration(1)
	if c.Interval > 0 && c.UserTimeout > c.Idle+c.Interval {
		k = (c.UserTimeout - c.Idle + c.Interval - 1) / c.Interval
	}
	return c.Idle + c.Interval*k
}

// WithUserTimeout returns c with UserTimeout set to Idle + Interval*Count,
// each zero field of c taken from sys: the usual pairing, under which data
// left unacknowledged is given up on as soon as an idle connection's probes
// would give up on a silent peer. Validate the result: with large values
// the sum can exceed the kernel's limit for UserTimeout.
func (c Config) WithUserTimeout(sys Config) Config {
	f := c.orDefaults(sys)
	c.UserTimeout = f.Idle + f.Interval*time.Duration(f.Count)
	return c
}
