package keepalive

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// This file serves illumos and Oracle Solaris (GOOS illumos builds the
// files of GOOS solaris too). What differs between them, the numbers and
// limits of TCP_KEEPINTVL and TCP_KEEPCNT and the least idle time, is a
// sunTCP that sockopt_illumos.go and sockopt_oracle_solaris.go provide as
// sun(). The model of Interval and Count, one keepalive abort threshold, is
// in abortthreshold.go.

// The options every version has (<netinet/tcp.h>, tcp(4P)) beyond those of
// the table, with the same numbers on illumos and Oracle Solaris; x/sys
// takes them from illumos. The thresholds are in milliseconds.
var (
	// keepAliveAbortThreshold is how long after the idle time unanswered
	// probes drop the connection; writing it unsets TCP_KEEPINTVL and
	// TCP_KEEPCNT.
	keepAliveAbortThreshold = sockopt{name: "TCP_KEEPALIVE_ABORT_THRESHOLD", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPALIVE_ABORT_THRESHOLD, unit: time.Millisecond}
	// tcpRTOMax is the largest retransmission timeout, which also bounds
	// the backed-off time between probes.
	tcpRTOMax = sockopt{name: "TCP_RTO_MAX", level: unix.IPPROTO_TCP, opt: unix.TCP_RTO_MAX, unit: time.Millisecond}
)

// The limits the family shares: TCP_KEEPALIVE_THRESHOLD is at most 10 days
// (the range of the ipadm property _keepalive_interval; illumos
// tcp_opt_data.c checks it), and TCP_ABORT_THRESHOLD is an int of
// milliseconds that the kernel does not check.
const (
	maxIdleMs           = 864000000
	maxAbortThresholdMs = 1<<31 - 1
)

// sunTCP is what a member of the family has.
type sunTCP struct {
	// idleMinMs is the least TCP_KEEPALIVE_THRESHOLD, in milliseconds.
	idleMinMs int64
	// interval and count are the entries of TCP_KEEPINTVL and TCP_KEEPCNT;
	// where the system has neither, entries that say why. Count's largest
	// value follows from Interval's least (see options).
	interval, count sockopt
}

// options returns the table of illumos or Oracle Solaris, once: on Oracle
// Solaris it depends on the release. TCP_KEEPALIVE_THRESHOLD carries Idle
// (TCP_KEEPIDLE sets the same value in seconds) and TCP_ABORT_THRESHOLD the
// user timeout, whose zero would retransmit for ever: a zero Idle or
// UserTimeout is written as the system's value. A zero Interval and Count
// write the system's keepalive abort threshold, which unsets both.
var options = sync.OnceValue(func() *[numOptions]sockopt {
	s := sun()
	t := [numOptions]sockopt{
		optIdle:        {name: "TCP_KEEPALIVE_THRESHOLD", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPALIVE_THRESHOLD, unit: time.Millisecond, min: s.idleMinMs, max: maxIdleMs},
		optInterval:    s.interval,
		optCount:       s.count,
		optUserTimeout: {name: "TCP_ABORT_THRESHOLD", level: unix.IPPROTO_TCP, opt: unix.TCP_ABORT_THRESHOLD, unit: time.Millisecond, min: 1, max: maxAbortThresholdMs},
		optKeepAlive:   soKeepAlive,
	}
	if t[optCount].noSet == "" {
		// Interval*Count is the abort threshold: Count's Max is the
		// one at the shortest Interval, and checkCombination bounds
		// the product.
		t[optCount].max = int64(maxAbortThreshold / (time.Duration(t[optInterval].min) * t[optInterval].unit))
	}
	return &t
})

// hasPair reports whether the system has TCP_KEEPINTVL and TCP_KEEPCNT.
func hasPair() bool { return options()[optInterval].noSet == "" }

// acceptInherits is false: illumos's tcp_input_listener copies the
// listener's keepalive values into the new connection, but that is read in
// the source only, and Oracle Solaris's is not public.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads a new socket.
const defaultsReadable = true

// userTimeoutEndsProbes is false: TCP_ABORT_THRESHOLD bounds retransmission
// only; the keepalive timer ends probes at its own threshold (illumos
// tcp_timers.c, tcp_keepalive_timer).
const userTimeoutEndsProbes = false

// checkCombination requires Interval and Count together or neither: with one
// alone the system derives the other (see abortthreshold.go).
func checkCombination(c Config) *FieldError {
	if !hasPair() {
		return nil
	}
	return checkThresholdPair(c)
}

func setOption(fd uintptr, o option, c Config) error {
	table := options()
	if o != optInterval && o != optCount {
		return table[o].set(fd, c.get(o))
	}
	if c.Interval == 0 || c.Count == 0 {
		// Neither: the system's abort threshold, which unsets both.
		sys, err := newSocketValue(keepAliveAbortThreshold)
		if err != nil {
			return err
		}
		return keepAliveAbortThreshold.set(fd, int64(sys))
	}
	if o == optCount {
		return table[optCount].set(fd, int64(c.Count))
	}
	// With a count in force the kernel multiplies the new interval by it
	// at once. Where that would pass the abort threshold's range, unset
	// the count first: the new Count is written next.
	n, err := table[optCount].get(fd)
	if err != nil {
		return err
	}
	if n > 0 && c.Interval > maxAbortThreshold/time.Duration(n) {
		sys, err := newSocketValue(keepAliveAbortThreshold)
		if err != nil {
			return err
		}
		if err := keepAliveAbortThreshold.set(fd, int64(sys)); err != nil {
			return err
		}
	}
	return table[optInterval].set(fd, int64(c.Interval))
}

func getOption(fd uintptr, o option) (int64, error) {
	switch o {
	case optKeepAlive, optIdle:
		// SO_KEEPALIVE reads 8, the option's number, when on.
		return options()[o].get(fd)
	case optUserTimeout:
		v, err := options()[o].get(fd)
		if err == nil && v <= 0 {
			return 0, unsupported("reading UserTimeout back", fmt.Sprintf(
				"TCP_ABORT_THRESHOLD is %d: other code set it, and the socket retransmits for ever, which no UserTimeout expresses", v/int64(time.Millisecond)))
		}
		return v, err
	}
	interval, count, err := readPair(fd, func() (time.Duration, error) { return newSocketValue(keepAliveAbortThreshold) })
	if o == optInterval {
		return int64(interval), err
	}
	return count, err
}

// readPair returns the Interval and Count in force on fd (see
// thresholdPair), with sysAbort to read the system's abort threshold.
func readPair(fd uintptr, sysAbort func() (time.Duration, error)) (time.Duration, int64, error) {
	var interval, count int64
	if hasPair() {
		table := options()
		var err error
		if interval, err = table[optInterval].get(fd); err != nil {
			return 0, 0, err
		}
		if count, err = table[optCount].get(fd); err != nil {
			return 0, 0, err
		}
	}
	abort, err := keepAliveAbortThreshold.get(fd)
	if err != nil {
		return 0, 0, err
	}
	var sys time.Duration
	if interval == 0 && count == 0 {
		if sys, err = sysAbort(); err != nil {
			return 0, 0, err
		}
	}
	return thresholdPair(time.Duration(interval), count, time.Duration(abort), sys)
}

// checkTCP reads the socket's protocol with SO_PROTOTYPE: SO_TYPE alone
// would pass an SCTP stream socket.
func checkTCP(fd uintptr) error {
	p, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOTYPE)
	switch {
	case errors.Is(err, unix.ENOTSOCK):
		return errors.New("not a socket")
	case err != nil:
		return os.NewSyscallError("getsockopt SO_PROTOTYPE", err)
	case p != unix.IPPROTO_TCP:
		return fmt.Errorf("socket protocol %d", p)
	}
	return nil
}

// systemDefaults reads a new TCP socket, which the kernel gives the
// caller's zone's ipadm properties: _keepalive_interval for Idle, and
// _ip_abort_interval for UserTimeout. Interval and Count are zero: a new
// socket sets neither, and its probes back off until the threshold
// _keepalive_abort_interval has passed.
func systemDefaults() (Config, error) {
	var c Config
	err := withNewSocket(func(fd uintptr) error {
		idle, err := options()[optIdle].get(fd)
		if err != nil {
			return fmt.Errorf("TCP_KEEPALIVE_THRESHOLD: %w", err)
		}
		ut, err := getOption(fd, optUserTimeout)
		if err != nil {
			return fmt.Errorf("TCP_ABORT_THRESHOLD: %w", err)
		}
		// The socket's own threshold is the system's.
		own := func() (time.Duration, error) {
			v, err := keepAliveAbortThreshold.get(fd)
			return time.Duration(v), err
		}
		interval, count, err := readPair(fd, own)
		if err != nil {
			return err
		}
		c = Config{Idle: time.Duration(idle), Interval: interval, Count: int(count), UserTimeout: time.Duration(ut)}
		return nil
	})
	if err != nil {
		return Config{}, fmt.Errorf("keepalive: reading the system defaults from a new socket: %w", err)
	}
	return c, nil
}

// newSocketValue reads so on a new TCP socket: the system's value.
func newSocketValue(so sockopt) (time.Duration, error) {
	var v int64
	err := withNewSocket(func(fd uintptr) error {
		var err error
		v, err = so.get(fd)
		return err
	})
	return time.Duration(v), err
}

// withNewSocket runs f on a new TCP socket, IPv4 or, where the zone has
// none, IPv6, and closes it.
func withNewSocket(f func(fd uintptr) error) error {
	fd, err := newTCPSocket(unix.AF_INET)
	if errors.Is(err, unix.EAFNOSUPPORT) {
		fd, err = newTCPSocket(unix.AF_INET6)
	}
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	return f(uintptr(fd))
}

// newTCPSocket opens a TCP socket that a concurrent fork and exec does not
// leak, as the standard library does where SOCK_CLOEXEC may be missing
// (Solaris before 11.4).
func newTCPSocket(family int) (int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	fd, err := unix.Socket(family, unix.SOCK_STREAM, unix.IPPROTO_TCP)
	if err == nil {
		unix.CloseOnExec(fd)
	}
	return fd, err
}

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
		return never, true
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

// errNoSysctlsHere is the error of SysctlConf: the system has no sysctls.
var errNoSysctlsHere error = fmt.Errorf("keepalive: %w", unsupported("writing sysctl lines",
	"the system keeps its keepalive defaults in the ipadm properties _keepalive_interval and _keepalive_abort_interval of tcp, not in sysctls"))

func sysctlConf(Config) (string, error) { return "", errNoSysctlsHere }
