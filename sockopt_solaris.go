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
// in threshold.go.

// The options every version has (<netinet/tcp.h>, tcp(4P)), with the same
// numbers on illumos and Oracle Solaris; x/sys takes them from illumos.
// The thresholds are in milliseconds.
var (
	soKeepAlive = sockopt{level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE}
	// keepAliveThreshold is the idle time before the first probe;
	// TCP_KEEPIDLE sets the same value in seconds.
	keepAliveThreshold = sockopt{level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPALIVE_THRESHOLD, unit: time.Millisecond}
	// keepAliveAbortThreshold is how long after the idle time unanswered
	// probes drop the connection; writing it unsets TCP_KEEPINTVL and
	// TCP_KEEPCNT.
	keepAliveAbortThreshold = sockopt{level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPALIVE_ABORT_THRESHOLD, unit: time.Millisecond}
	// abortThreshold is how long retransmission goes on before the
	// connection is dropped; 0 means for ever.
	abortThreshold = sockopt{level: unix.IPPROTO_TCP, opt: unix.TCP_ABORT_THRESHOLD, unit: time.Millisecond}
	// tcpRTOMax is the largest retransmission timeout, which also bounds
	// the backed-off time between probes.
	tcpRTOMax = sockopt{level: unix.IPPROTO_TCP, opt: unix.TCP_RTO_MAX, unit: time.Millisecond}
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
	// interval and count are TCP_KEEPINTVL and TCP_KEEPCNT, and
	// intervalMin and intervalMax bound the interval in seconds. noPair
	// says why the system has neither option; then the others are zero.
	interval, count          sockopt
	intervalMin, intervalMax int64
	noPair                   string
}

// supports answers support, once: on Oracle Solaris it depends on the
// release.
var supports = sync.OnceValue(func() [numOptions]Support {
	s := sun()
	t := [numOptions]Support{
		optKeepAlive:   {Option: "SO_KEEPALIVE", Set: true, Get: true},
		optIdle:        {Option: "TCP_KEEPALIVE_THRESHOLD", Set: true, Get: true, Unit: time.Millisecond, Min: s.idleMinMs, Max: maxIdleMs},
		optUserTimeout: {Option: "TCP_ABORT_THRESHOLD", Set: true, Get: true, Unit: time.Millisecond, Min: 1, Max: maxAbortThresholdMs},
	}
	if s.noPair != "" {
		// Get reads the threshold to tell that the system's is in
		// force, and reports zero.
		t[optInterval] = Support{Option: "TCP_KEEPALIVE_ABORT_THRESHOLD", Get: true, whySet: s.noPair}
		t[optCount] = t[optInterval]
		return t
	}
	t[optInterval] = Support{Option: "TCP_KEEPINTVL", Set: true, Get: true, Unit: time.Second, Min: s.intervalMin, Max: s.intervalMax}
	// Interval*Count is the abort threshold: Count's Max is the one at
	// the shortest Interval, and checkCombination bounds the product.
	t[optCount] = Support{Option: "TCP_KEEPCNT", Set: true, Get: true, Min: 1, Max: int64(maxAbortThreshold / (time.Duration(s.intervalMin) * time.Second))}
	return t
})

func support(o option) Support { return supports()[o] }

// acceptInherits is false: illumos's tcp_input_listener copies the
// listener's keepalive values into the new connection, but that is read in
// the source only, and Oracle Solaris's is not public.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads a new socket.
const defaultsReadable = true

// checkCombination requires Interval and Count together or neither: with one
// alone the system derives the other (see threshold.go).
func checkCombination(c Config) *FieldError {
	if sun().noPair != "" {
		return nil
	}
	return checkThresholdPair(c)
}

func setOption(fd uintptr, o option, c, sys Config) error {
	switch o {
	case optKeepAlive:
		return soKeepAlive.set(fd, c.get(o))
	case optIdle:
		return setOrRestore(fd, keepAliveThreshold, c.Idle, sys.Idle)
	case optUserTimeout:
		// TCP_ABORT_THRESHOLD 0 retransmits for ever: zero means the
		// system's threshold, which is always in force.
		return setOrRestore(fd, abortThreshold, c.UserTimeout, sys.UserTimeout)
	}
	s := sun()
	if c.Interval == 0 || c.Count == 0 {
		// Neither: the system's abort threshold, which unsets both.
		return setOrRestore(fd, keepAliveAbortThreshold, 0, 0)
	}
	if s.noPair != "" {
		return unsupported("setting "+optionField[o], s.noPair)
	}
	if o == optCount {
		return s.count.set(fd, int64(c.Count))
	}
	// With a count in force the kernel multiplies the new interval by it
	// at once. Where that would pass the abort threshold's range, unset
	// the count first: the new Count is written next.
	n, err := s.count.get(fd)
	if err != nil {
		return err
	}
	if n > 0 && c.Interval > maxAbortThreshold/time.Duration(n) {
		if err := setOrRestore(fd, keepAliveAbortThreshold, 0, 0); err != nil {
			return err
		}
	}
	return s.interval.set(fd, int64(c.Interval))
}

// setOrRestore writes v to so on fd or, when v is zero, the system's value:
// def when known, otherwise the value a new socket has.
func setOrRestore(fd uintptr, so sockopt, v, def time.Duration) error {
	if v == 0 {
		v = def
	}
	if v == 0 {
		d, err := newSocketValue(so)
		if err != nil {
			return err
		}
		v = d
	}
	return so.set(fd, int64(v))
}

func getOption(fd uintptr, o option) (int64, error) {
	switch o {
	case optKeepAlive:
		// SO_KEEPALIVE reads 8, the option's number, when on.
		return soKeepAlive.get(fd)
	case optIdle:
		return keepAliveThreshold.get(fd)
	case optUserTimeout:
		v, err := abortThreshold.get(fd)
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
	s := sun()
	var interval, count int64
	if s.noPair == "" {
		var err error
		if interval, err = s.interval.get(fd); err != nil {
			return 0, 0, err
		}
		if count, err = s.count.get(fd); err != nil {
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
		idle, err := keepAliveThreshold.get(fd)
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
