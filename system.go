package keepalive

import (
	"math"
	"time"
)

// SystemDefaults returns the values a socket has when it sets none itself:
// on Linux the sysctls net.ipv4.tcp_keepalive_time, tcp_keepalive_intvl and
// tcp_keepalive_probes of the caller's network namespace. UserTimeout is
// zero: by default there is none; Off is false. [Platform] tells whether
// the platform's defaults can be read; where they cannot, SystemDefaults
// returns an error wrapping [errors.ErrUnsupported].
//
// Note that on macOS, FreeBSD and NetBSD the defaults are the sysctls
// net.inet.tcp.keepidle, keepintvl and keepcnt (milliseconds on macOS and
// FreeBSD, half seconds on NetBSD), and on FreeBSD UserTimeout is
// net.inet.tcp.maxunacktime; on OpenBSD they are keepidle and keepintvl
// and the fixed count of 8; on DragonFly they are what a new socket
// reports, in the options' own unit. On Windows they are the registry
// values KeepAliveTime and KeepAliveInterval (milliseconds, under
// HKLM\SYSTEM\CurrentControlSet\Services\Tcpip\Parameters), 2 hours and 1
// second where they are absent, and 10 probes.
//
// Note that on illumos and Solaris SystemDefaults reads a new socket: Idle
// is the ipadm property _keepalive_interval, UserTimeout
// _ip_abort_interval (a user timeout is always in force there), and
// Interval and Count are zero, since a new socket has no fixed interval
// (see [Config.Interval]).
func SystemDefaults() (Config, error) {
	return systemDefaults()
}

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
// The values are those of the caller's network namespace.
//
// Note that on illumos and Solaris RetransmitTimeout is TCP_ABORT_THRESHOLD
// of a new socket, the ipadm property _ip_abort_interval (5 minutes by
// default), counted from the first retransmission and checked when the
// retransmission timer fires. Elsewhere than Linux, illumos and Solaris
// RetransmitTimeout returns an error wrapping [errors.ErrUnsupported].
func RetransmitTimeout() (time.Duration, error) {
	return retransmitLimit()
}

// SysctlConf returns the lines of a sysctl configuration file (as for
// /etc/sysctl.d/, see sysctl.conf(5)) that make c's Idle, Interval and Count
// the machine-wide defaults: on Linux net.ipv4.tcp_keepalive_time,
// tcp_keepalive_intvl and tcp_keepalive_probes. A zero field has no line:
// it leaves the system's value as it is. The defaults apply to sockets that
// turn keepalive on and set no values of their own; the sysctls do not turn
// keepalive on, and Off has no sysctl.
//
// UserTimeout has no sysctl: TCP_USER_TIMEOUT can only be set on each
// socket. A non-zero UserTimeout, Off, and each zero field, is written as a
// comment line that says so.
//
// The Config is validated first. Elsewhere than Linux SysctlConf returns an
// error wrapping [errors.ErrUnsupported].
func (c Config) SysctlConf() (string, error) {
	if err := c.Validate(); err != nil {
		return "", err
	}
	return sysctlConf(c)
}

// WithDefaults returns c with each zero Idle, Interval, Count and
// UserTimeout taken from sys, usually the result of [SystemDefaults]: the
// values a socket holds after [Set] with c, as [Get] reports them. Off is
// c's.
func (c Config) WithDefaults(sys Config) Config {
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

// inForce returns c with each zero Idle, Interval and Count taken from the
// system defaults, which it reads only when c has such a field.
func (c Config) inForce() (Config, error) {
	if c.Idle != 0 && c.Interval != 0 && c.Count != 0 {
		return c, nil
	}
	sys, err := systemDefaults()
	if err != nil {
		return Config{}, err
	}
	return c.WithDefaults(sys), nil
}

// never is the detection time of a Config that never notices a vanished
// peer: the largest Duration, longer than any bound it is compared with.
const never time.Duration = math.MaxInt64

// DetectionTime returns the longest time a connection with settings c takes
// to declare an idle connection dead once its peer has vanished, counted
// from the last segment the peer sent. A zero field counts at the system's
// value, which DetectionTime reads with [SystemDefaults] when c has one, so
// that the result is the worst case of a socket to which c is applied; it
// fails, with the error of SystemDefaults, where the system's values cannot
// be read. For a Config whose values come from elsewhere (another host's
// defaults), fill them in first: c.WithDefaults(sys).DetectionTime(). For a
// Config read back with [Get], whose fields hold the values in force,
// nothing is read. For a Config that is Off, which never notices, it
// returns the largest Duration, math.MaxInt64.
//
// Without a UserTimeout that is Idle + Interval*Count: the first probe goes
// out after Idle, and the connection is dropped when Count probes have gone
// unanswered. With a UserTimeout, Linux ignores Count and drops the
// connection at the first probe timer that finds UserTimeout passed and a
// probe unanswered: Idle + Interval*k for the least k of at least 1 that
// reaches UserTimeout (net/ipv4/tcp_timer.c, tcp_keepalive_timer). Elsewhere
// the user timeout does not end idle probing: Idle + Interval*Count.
//
// Note that on illumos and Solaris a socket that sets neither Interval nor
// Count (as [SystemDefaults] and [Get] report such a socket there: both
// zero) sends probes at backed-off times and is dropped at the first probe
// timer past Idle + its keepalive abort threshold: then DetectionTime is
// Idle + the system's threshold (ipadm property _keepalive_abort_interval, 8
// minutes by default) + the largest retransmission timeout
// (_rexmit_interval_max, 60 s), read from a new socket, or math.MaxInt64 if
// they cannot be read. The UserTimeout there does not end probes.
func (c Config) DetectionTime() (time.Duration, error) {
	if c.Off {
		return never, nil
	}
	c, err := c.inForce()
	if err != nil {
		return 0, err
	}
	if c.Interval == 0 && c.Count == 0 {
		if d, ok := backoffLimit(c.Idle); ok {
			return d, nil
		}
	}
	if c.UserTimeout == 0 || !userTimeoutEndsProbes {
		return c.Idle + c.Interval*time.Duration(c.Count), nil
	}
	k := time.Duration(1)
	if c.Interval > 0 && c.UserTimeout > c.Idle+c.Interval {
		k = (c.UserTimeout - c.Idle + c.Interval - 1) / c.Interval
	}
	return c.Idle + c.Interval*k, nil
}

// WithUserTimeout returns c with UserTimeout set to Idle + Interval*Count,
// each zero field of c at the system's value, which it reads with
// [SystemDefaults] when c has one (it fails, with the error of
// SystemDefaults, where they cannot be read): the usual pairing, under
// which data left unacknowledged is given up on as soon as an idle
// connection's probes would give up on a silent peer. The other fields stay
// as they are in c. Validate the result: with large values the sum can
// exceed the platform's limit for UserTimeout.
//
// Note that a peer that stops reading for longer than the result is cut off
// although alive; see [Config.UserTimeout].
func (c Config) WithUserTimeout() (Config, error) {
	f, err := c.inForce()
	if err != nil {
		return Config{}, err
	}
	c.UserTimeout = f.Idle + f.Interval*time.Duration(f.Count)
	return c, nil
}
