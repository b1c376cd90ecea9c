// Package keepalive sets TCP keepalive per socket: the idle time before the
// first probe, the time between probes, the number of unanswered probes
// before the connection is declared dead, and the time sent data may stay
// unacknowledged (the user timeout).
//
// # Why keepalive
//
// Firewalls, NATs and load balancers forget TCP flows that stay idle for a
// while (AWS NLB after 350 s, Azure Load Balancer after 4 minutes, GCP Cloud
// NAT after 20 minutes) and then drop their packets without a word. A
// long-lived connection that was idle at the wrong moment hangs until the
// application gives up, or dies hours later. Keepalive probes keep the flow
// alive in the middlebox and notice a peer that is gone. The machine-wide
// defaults (Linux: net.ipv4.tcp_keepalive_time 7200 s, _intvl 75 s,
// _probes 9) take over two hours to act; this package sets the values for one
// service's sockets without touching the host.
//
// # Zero fields, off, and net.KeepAliveConfig
//
// A zero field in [Config] means the operating system's default, wherever a
// Config is used: on Linux the sysctls net.ipv4.tcp_keepalive_time,
// tcp_keepalive_intvl and tcp_keepalive_probes, and no user timeout. A new
// socket ([Dialer], [ListenConfig], [Config.Control]) has the defaults
// already; [Set] on a socket that holds another value puts the default back.
// So [Get] after Set reports the Config with each zero field filled in from
// [SystemDefaults] ([Config.WithDefaults]), and [Config.DetectionTime] of the
// Config, which reads the defaults for its zero fields, is the time the
// socket takes. [Config.Off] turns keepalive off.
//
// This differs on purpose from [net.KeepAliveConfig], where a zero field
// means Go's own default (15 s, 15 s, 9) and a negative one the socket's
// current value. [Config.KeepAliveConfig] and [FromKeepAliveConfig] convert
// between the two explicitly.
//
// The standard library also sets keepalive by itself: a [net.Dialer] or
// [net.ListenConfig] whose KeepAlive is zero applies 15 s / 15 s / 9 after
// every connect and accept, over anything a Control hook set, and discards
// the error if the kernel refuses. [Dialer] and [ListenConfig] switch that
// off and report every error.
//
// # UserTimeout
//
// Keepalive probes are sent only while the connection is idle. When data has
// been sent and is not acknowledged, the kernel retransmits instead, for
// about 15 minutes by default on Linux (net.ipv4.tcp_retries2, which
// [RetransmitTimeout] turns into time). [Config.UserTimeout] bounds that
// time. On Linux, when it is set the kernel also uses it instead of Count to
// decide when unanswered keepalive probes kill the connection;
// [Config.WithUserTimeout] derives the usual value, Idle + Interval*Count.
//
// A user timeout also ends a healthy connection whose peer has only stopped
// reading: once the peer's receive window is full, the data waiting to be
// sent is unacknowledged too, and the connection is closed when it has
// waited longer than the user timeout. A consumer that pauses, a server that
// applies back-pressure, a subscriber stalled for a checkpoint: each is cut
// off as if dead when the pause outlasts the user timeout. Set one only
// longer than the longest pause the protocol allows.
//
// # Errors
//
// [Config.Validate] reports every field that cannot be applied at once, as a
// [*ValidationError] holding one [*FieldError] per field, before any socket
// is touched. [Set], [Get] and [Disable] take any socket the standard
// library exposes (a net.Conn that is or wraps a [*net.TCPConn], a
// [syscall.Conn] such as a [*net.TCPListener] or an [*os.File], a
// [syscall.RawConn]) and fail with [ErrNotTCP] for anything else. Set
// applies the whole Config or, where the values can be read back, leaves the
// socket as it was. Every error starts with "keepalive:" and wraps the
// system's error, so [errors.Is] finds the errno.
//
// # Configuration from text
//
// A Config has a text form, "idle=60s,interval=5s,count=3,user-timeout=75s"
// (or "off"), that [ParseConfig] reads and [Config.String] writes. Config
// implements [encoding.TextMarshaler] and [encoding.TextUnmarshaler], so it
// is a string in JSON or YAML, an environment variable, or a command-line
// flag through [flag.TextVar]. [Suggest] chooses a Config from what is known
// of a path: how long its firewalls or load balancers keep an idle flow, and
// how soon a vanished peer must be noticed.
//
// # The system's view
//
// [SystemDefaults] reads the values a socket has when it sets none itself,
// and [RetransmitTimeout] how long unacknowledged data is retransmitted;
// [Config.DetectionTime] is the worst-case time a Config takes to notice a
// vanished peer, with its zero fields at the system's values, and
// [Config.WithUserTimeout] the user timeout that matches it.
// [Config.SysctlConf] writes the sysctl lines that would make a Config the
// machine-wide default.
//
// # Platforms
//
// [Platform] reports what the operating system it runs on can do with each
// field: whether it can be set and read back, the socket option that
// carries it, and its range. Linux, macOS and iOS, FreeBSD, NetBSD,
// DragonFly, Windows, illumos, Solaris and AIX set Idle, Interval and Count
// per socket; the user timeout exists where the system has an equivalent.
// OpenBSD turns keepalive on and off per socket but sets its timing for the
// whole machine only. Only on Linux is a listening socket's setting known to
// pass to the sockets it accepts; elsewhere [ListenConfig] applies the Config
// to each accepted connection. Whatever a platform cannot do fails with an error that
// wraps [errors.ErrUnsupported], names the field and the platform and says
// why; no field is ever silently ignored.
//
// Note that the systems differ in more than their limits. NetBSD counts
// Idle and Interval in half seconds. The user timeout of macOS and iOS
// (TCP_RXT_CONNDROPTIME) and of FreeBSD 14 and later (TCP_MAXUNACKTIME)
// bound unacknowledged data only, and count from other moments than
// Linux's (see [Config.UserTimeout]). FreeBSD and DragonFly probe every
// connection whatever SO_KEEPALIVE says unless net.inet.tcp.always_keepalive
// is set to 0, so [Config.Off] cannot take effect there (see [Config.Off]).
//
// Note that Windows before 10 version 1709, and Wine, set Idle and Interval
// together through SIO_KEEPALIVE_VALS, cannot read any value back ([Get]
// fails there) and send a fixed 10 probes: a non-zero Count is refused.
// Whether a platform has the options is decided by trying them, not by its
// version number.
//
// Note that on illumos and Solaris a socket that sets neither Interval nor
// Count has no fixed interval: its probes back off, and it is dropped once a
// keepalive abort threshold has passed after Idle. There Interval and Count
// are set together or not at all, and [Get] reports both zero for such a
// socket. Solaris before 11.4 sets Idle only.
//
// Note that Plan 9, js/wasm and wasip1 have no socket option this package
// can reach, not even SO_KEEPALIVE: every Config, the zero one included,
// fails [Config.Validate] there. (Plan 9 can turn keepalive on, through a
// connection's ctl file, but never off, and has no [syscall.RawConn] to
// reach a socket with.)
package keepalive

import (
	"errors"
	"fmt"
	"math"
	"net"
	"syscall"
	"time"
)

// Config holds per-socket TCP keepalive settings.
//
// A zero field means the system's default (see the package documentation);
// this differs from [net.KeepAliveConfig], where zero means 15 s, 15 s and
// 9. The zero Config turns keepalive on with the system's values and sets no
// user timeout.
type Config struct {
	// Idle is how long the connection must be idle before the first
	// keepalive probe is sent (TCP_KEEPIDLE on Linux). On Linux it must be
	// a whole number of seconds from 1s to 32767s; [Platform] gives the
	// range elsewhere. Zero means the system default
	// (net.ipv4.tcp_keepalive_time on Linux, usually 2 hours).
	//
	// Note that on NetBSD Idle and Interval are whole numbers of half
	// seconds (the kernel's slow timer ticks; TCP_KEEPIDLE 3 is 1.5s), and
	// that macOS, FreeBSD, NetBSD and DragonFly refuse a Config whose
	// Idle + Interval*Count exceeds the counter their kernels add them in
	// (see [Config.Validate]).
	//
	// Note that on Windows Idle and Interval are whole seconds from 1s to
	// 32767s, set with TCP_KEEPIDLE and TCP_KEEPINTVL since Windows 10
	// version 1709. Before it, and under Wine, they are set together with
	// SIO_KEEPALIVE_VALS, which cannot be read back: [Get] fails there.
	//
	// Note that on illumos and Solaris Idle is TCP_KEEPALIVE_THRESHOLD, a
	// whole number of milliseconds from 1s (10s on Oracle Solaris) to 10
	// days, and zero means the ipadm property _keepalive_interval (2
	// hours by default).
	Idle time.Duration

	// Interval is the time between unanswered keepalive probes
	// (TCP_KEEPINTVL on Linux). On Linux it must be a whole number of
	// seconds from 1s to 32767s. Zero means the system default
	// (net.ipv4.tcp_keepalive_intvl on Linux, usually 75 seconds).
	//
	// Note that on illumos and Solaris 11.4 and later Interval and Count
	// must be set together or both be zero: with one alone the system
	// derives the other. Both zero is the system default, which has no
	// fixed interval: probes back off from the retransmission timeout, and
	// the connection is dropped once the keepalive abort threshold (ipadm
	// property _keepalive_abort_interval, 8 minutes by default) has passed
	// after Idle. Interval is whole seconds from 1s to 60s on illumos (the
	// retransmission timeout's bounds) and from 10s to 10 days on Solaris;
	// Solaris before 11.4 cannot set it.
	Interval time.Duration

	// Count is how many probes may go unanswered before the connection is
	// declared dead (TCP_KEEPCNT on Linux), from 1 to 127 on Linux. Zero
	// means the system default (net.ipv4.tcp_keepalive_probes on Linux,
	// usually 9). Linux ignores Count when UserTimeout is set.
	//
	// Note that on Windows Count is TCP_KEEPCNT, from 1 to 255, since
	// Windows 10 version 1703; before it, and under Wine, Windows sends 10
	// probes and a non-zero Count is refused.
	//
	// Note that on illumos and Solaris Interval*Count is the keepalive
	// abort threshold, at most 2147483647ms; see Interval.
	Count int

	// UserTimeout is the longest time sent data may stay unacknowledged
	// before the connection is closed (TCP_USER_TIMEOUT on Linux). On Linux
	// it must be a whole number of milliseconds up to 2147483647ms. Zero
	// means none: the system's retransmission limit applies.
	//
	// Linux counts it from the first retransmission, one retransmission
	// timeout (at least 200 ms) after the data was sent. When it is set,
	// Linux also closes an idle connection whose probes go unanswered once
	// UserTimeout has passed since the peer was last heard from, instead of
	// after Count probes. A peer that stops reading for longer than
	// UserTimeout is cut off although it is alive: its full receive window
	// leaves the data waiting to be sent unacknowledged.
	//
	// Note that on Linux a Multipath TCP socket has no user timeout, so
	// [Dialer] and [ListenConfig] use plain TCP when UserTimeout is set, and
	// [Set] refuses it on a Multipath TCP socket. The equivalents elsewhere
	// have their own semantics; [Platform] names them. Where there is none
	// (NetBSD, DragonFly, OpenBSD, FreeBSD before 14, AIX) a non-zero UserTimeout
	// fails with an error wrapping [errors.ErrUnsupported].
	//
	// Note that on macOS and iOS UserTimeout is TCP_RXT_CONNDROPTIME, whole
	// seconds: it counts from the first retransmission timeout of data sent
	// while the connection was established (not of a SYN or a FIN), and the
	// connection is closed at the first retransmission timeout at or after
	// it. It does not end idle keepalive probing, which Count still ends,
	// nor a connection whose peer's window is closed.
	//
	// Note that on FreeBSD 14 and later UserTimeout is TCP_MAXUNACKTIME,
	// whole seconds: the connection is closed once sent data has gone that
	// long without an acknowledgement of progress, counted from the last
	// one (or from the send, if nothing was outstanding), while the peer's
	// window is closed too. It does not end idle keepalive probing, which
	// Count still ends. Zero there means the sysctl
	// net.inet.tcp.maxunacktime, which is none unless the administrator
	// set it, and [Get] reports that value.
	//
	// Note that on Windows UserTimeout is TCP_MAXRT, in whole seconds from
	// 1s to 2147483s: how long Windows retransmits before it drops the
	// connection (Microsoft's "connection timeout"; from when it counts is
	// not documented). Zero writes back the value TCP_MAXRT has on a new
	// socket, under which Windows' own limit on retransmissions applies;
	// [Get] fails for a socket that other code set to retransmit forever
	// (TCP_MAXRT -1), which a Config cannot express. Whether TCP_MAXRT also
	// ends an idle connection whose keepalive probes go unanswered is not
	// documented: [Config.DetectionTime] counts Count probes there. Wine has
	// no TCP_MAXRT.
	//
	// Note that on illumos and Solaris the equivalent is
	// TCP_ABORT_THRESHOLD, in milliseconds, and differs: it bounds the
	// retransmission of unacknowledged data only, counted like Linux's
	// from the first retransmission but checked only when the
	// retransmission timer fires (up to 60s late by default); it never ends
	// keepalive probes; and it is always in force: zero means the system's
	// (ipadm property _ip_abort_interval, 5 minutes by default), which
	// [Get] and [SystemDefaults] report.
	UserTimeout time.Duration

	// Off turns keepalive off (SO_KEEPALIVE 0): no probes are sent, and a
	// peer that vanishes while the connection is idle is never noticed.
	// The other fields are still applied to the socket, and take effect if
	// keepalive is turned on again; a user timeout stays in force. False,
	// the zero value, turns keepalive on.
	//
	// Note that where the sysctl net.inet.tcp.always_keepalive is 1 (by
	// default on FreeBSD and DragonFly; on macOS and OpenBSD if it is set)
	// the kernel probes every connection whatever SO_KEEPALIVE says: there
	// turning keepalive off fails, in [Set], [Disable], [Config.Control],
	// [Dialer] and [ListenConfig] alike, with an error that names the
	// sysctl and wraps [errors.ErrUnsupported], and [Get] reports keepalive
	// on.
	Off bool
}

// ErrNotTCP is returned, wrapped, by [Set], [Get] and [Disable] for a socket
// that is not TCP and does not wrap one.
var ErrNotTCP = errors.New("keepalive: not a TCP socket")

// option indexes the per-socket settings a Config carries, in the order
// the apply path writes them: SO_KEEPALIVE last, so that probes start with
// their values in place.
type option int

const (
	optIdle        option = iota // Idle
	optInterval                  // Interval
	optCount                     // Count
	optUserTimeout               // UserTimeout
	optKeepAlive                 // !Off
	numOptions
)

// optionField names each option's field of Config, for errors.
var optionField = [numOptions]string{
	optUserTimeout: "UserTimeout",
	optCount:       "Count",
	optInterval:    "Interval",
	optIdle:        "Idle",
	optKeepAlive:   "Off",
}

// get returns c's value of o: a duration in nanoseconds, a count, or 1 for
// keepalive on and 0 for off.
func (c Config) get(o option) int64 {
	switch o {
	case optIdle:
		return int64(c.Idle)
	case optInterval:
		return int64(c.Interval)
	case optCount:
		return int64(c.Count)
	case optUserTimeout:
		return int64(c.UserTimeout)
	}
	if c.Off {
		return 0
	}
	return 1
}

// with returns c with o set to v, in the units of get.
func (c Config) with(o option, v int64) Config {
	switch o {
	case optIdle:
		c.Idle = time.Duration(v)
	case optInterval:
		c.Interval = time.Duration(v)
	case optCount:
		c.Count = int(v)
	case optUserTimeout:
		c.UserTimeout = time.Duration(v)
	case optKeepAlive:
		c.Off = v == 0
	}
	return c
}

// Validate reports whether c can be applied exactly on this platform. It
// refuses negative values, values that are not a whole number of the
// platform's unit (seconds for Idle on Linux, milliseconds for UserTimeout),
// values beyond the platform's limits, and fields the platform cannot set.
// Nothing is ever rounded or clamped.
//
// Note that macOS, FreeBSD, NetBSD and DragonFly add Idle + Interval*Count
// in a bounded counter to decide when a silent peer is dead (on macOS
// 2^32-1 milliseconds, about 49.7 days; on the BSDs a number of clock
// ticks), and would drop connections early if it wrapped: there Validate
// also refuses a Config whose sum, each zero field at the system default,
// exceeds it, as a FieldError for "Idle+Interval*Count".
//
// The error, if any, is a [*ValidationError] that holds a [*FieldError] for
// every field at fault, in the order Idle, Interval, Count, UserTimeout,
// Off; a field the platform cannot set wraps [errors.ErrUnsupported].
func (c Config) Validate() error {
	var errs []*FieldError
	for o := range numOptions {
		if err := c.check(o); err != nil {
			errs = append(errs, err)
		}
	}
	if errs == nil {
		if err := checkCombination(c); err != nil {
			errs = append(errs, err)
		}
	}
	if errs == nil {
		return nil
	}
	return &ValidationError{Errors: errs}
}

// check validates c's value of o against the platform's table.
func (c Config) check(o option) *FieldError {
	so := &options()[o]
	v := c.get(o)
	if o == optKeepAlive {
		if so.noSet != "" {
			return &FieldError{Field: optionField[o], Value: 1 - v, Err: so.errSet(o), o: o}
		}
		return nil
	}
	if v == 0 {
		return nil
	}
	if so.noSet != "" {
		return &FieldError{Field: optionField[o], Value: v, Err: so.errSet(o), o: o, unit: so.unit}
	}
	u := so.valueUnit()
	var reason error
	switch {
	case v < so.min*u || v > so.max*u:
		reason = ErrOutOfRange
	case v%u != 0:
		reason = ErrNotWhole
	default:
		return nil
	}
	return &FieldError{
		Field: optionField[o],
		Value: v,
		Min:   so.min * u,
		Max:   so.max * u,
		Err:   reason,
		o:     o,
		unit:  so.unit,
	}
}

// spanField names the sum Idle + Interval*Count in the FieldError of
// checkSpan.
const spanField = "Idle+Interval*Count"

// spanStandIn holds the values checkSpan assumes for the system defaults of
// the fields a Config leaves zero before it reads them: Linux's limits,
// beyond which no system sets its defaults in practice.
var spanStandIn = Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}

// checkSpan is the rule across fields, for checkCombination, of a platform
// whose kernel adds Idle + Interval*Count in a counter that holds at most
// max, and would wrap: the sum, each zero field taken from the system
// defaults that sys reads, must not exceed max. sys is called only when the
// sum could exceed max with defaults within spanStandIn; if it fails, the
// rule is not applied.
func checkSpan(c Config, max time.Duration, sys func() (Config, error)) *FieldError {
	if c.Idle == 0 && c.Interval == 0 && c.Count == 0 {
		return nil
	}
	if s, ok := span(c.WithDefaults(spanStandIn)); ok && s <= max {
		return nil
	}
	if c.Idle == 0 || c.Interval == 0 || c.Count == 0 {
		d, err := sys()
		if err != nil {
			return nil
		}
		c = c.WithDefaults(d)
	}
	s, ok := span(c)
	if ok && s <= max {
		return nil
	}
	e := &FieldError{Field: spanField, Value: int64(s), Max: int64(max), Err: ErrOutOfRange, o: optIdle, unit: time.Second}
	if !ok {
		e.Value = math.MaxInt64
		e.valueText = fmt.Sprintf("%s+%s*%d", formatValue(optIdle, int64(c.Idle), time.Second), formatValue(optIdle, int64(c.Interval), time.Second), c.Count)
	}
	return e
}

// span returns c.Idle + c.Interval*c.Count for non-negative fields, and
// false if that overflows a Duration.
func span(c Config) (time.Duration, bool) {
	if c.Interval != 0 && time.Duration(c.Count) > (math.MaxInt64-c.Idle)/c.Interval {
		return 0, false
	}
	return c.Idle + c.Interval*time.Duration(c.Count), true
}

// Control sets c on the new socket behind rc. It has the signature of
// [net.Dialer.Control] and [net.ListenConfig.Control], so it can be grafted
// onto a caller's own dialer or listen config; it acts only on the networks
// "tcp", "tcp4" and "tcp6" and returns nil for any other. The Config is
// validated first, so an invalid one leaves the socket untouched.
//
// Control is meant for a new socket, on which a zero field already holds
// the system default: it writes the non-zero fields and SO_KEEPALIVE, and
// leaves the others as they are. Use [Set] on a socket that may hold other
// values.
//
// Note that a [net.Dialer] or [net.ListenConfig] whose KeepAlive is zero
// overwrites these settings with Go's defaults after connect and after every
// accept: set its KeepAlive to -1, or use [Dialer] or [ListenConfig], which
// do. The standard library ignores Control when ControlContext is set.
//
// Note that on Linux sockets accepted from a listening socket inherit its
// settings; [Platform] tells whether they do elsewhere.
func (c Config) Control(network, address string, rc syscall.RawConn) error {
	if !isTCP(network) {
		return nil
	}
	if err := c.Validate(); err != nil {
		return err
	}
	return controlNew(rc, c, network+" "+address)
}

// Set applies c to the socket s: a connection, established or not, or a
// listening socket. s may be a net.Conn that is a [*net.TCPConn] or wraps
// one through a NetConn method (as [*tls.Conn] does), any [syscall.Conn]
// (a [*net.TCPListener], an [*os.File] holding a descriptor passed in), or
// a [syscall.RawConn]; anything that is not a TCP socket fails with an error
// wrapping [ErrNotTCP].
//
// The Config is validated before the socket is touched. A zero field puts
// the system default back if the socket holds another value, so that [Get]
// then reports c with its zero fields filled in from [SystemDefaults]. Set
// applies the whole Config or, where the platform reads the values back,
// restores the values the socket had and returns the error: for example,
// Linux refuses a user timeout on a Multipath TCP socket, and the error says
// so.
//
// Note that Linux cannot unset an option: to put the default back, Set
// writes the value of the sysctl, which a later change of the sysctl does
// not reach. The defaults are those of the caller's network namespace.
// macOS and FreeBSD can: Set writes zero, and the socket follows the
// sysctl again. NetBSD and DragonFly, which refuse zero, are given the
// value a new socket has.
// [Platform] tells where the defaults cannot be read; there a zero field
// leaves the socket's value as it is.
//
// Note that on illumos and Solaris a zero Idle or UserTimeout writes the
// value a new socket has, and zero Interval and Count write the system's
// keepalive abort threshold, which unsets both; before Solaris 11.4, which
// sets neither, a threshold other code set stays, and Get fails.
func Set(s any, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	sk, err := socketOf(s)
	if err != nil {
		return err
	}
	return sk.set(c)
}

// Get returns the keepalive settings in force on the socket s, taken as
// [Set] takes it, as the kernel reports them: Off reports whether
// SO_KEEPALIVE is off, Idle, Interval and Count the values in force (the
// system's where the socket sets none), and UserTimeout zero when no user
// timeout is in force. [Config.DetectionTime] of the result is the
// worst-case time the socket takes to notice a vanished peer.
//
// Note that a Multipath TCP socket on Linux has no user timeout: Get
// reports UserTimeout zero for it. [Platform] tells what can be read back
// elsewhere; a field that can be set but not read fails with an error
// wrapping [errors.ErrUnsupported], and one that cannot be set is reported
// at the system default.
//
// Note that on illumos and Solaris a user timeout is always in force, and
// Get reports it. Get reports Interval and Count zero for a socket that
// sets neither, and fails, with an error wrapping [errors.ErrUnsupported],
// for one that other code left in a state no Config expresses (one of them
// set alone, or another keepalive abort threshold).
func Get(s any) (Config, error) {
	sk, err := socketOf(s)
	if err != nil {
		return Config{}, err
	}
	return sk.get()
}

// Disable turns keepalive (SO_KEEPALIVE) off on the socket s, taken as
// [Set] takes it. The other values stay as they are and take effect again if
// keepalive is turned back on; a user timeout stays in force. It is Set
// with the values the socket holds and Off true, without reading them.
func Disable(s any) error {
	sk, err := socketOf(s)
	if err != nil {
		return err
	}
	return sk.disable()
}

func isTCP(network string) bool {
	return network == "tcp" || network == "tcp4" || network == "tcp6"
}

// KeepAliveConfig returns c as a [net.KeepAliveConfig]: Enable is !c.Off,
// and each zero field becomes -1, which the standard library reads as
// "leave the current value", the system default on a new socket.
// UserTimeout has no counterpart in net.KeepAliveConfig and is not carried.
func (c Config) KeepAliveConfig() net.KeepAliveConfig {
	k := net.KeepAliveConfig{Enable: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count}
	if k.Idle == 0 {
		k.Idle = -1
	}
	if k.Interval == 0 {
		k.Interval = -1
	}
	if k.Count == 0 {
		k.Count = -1
	}
	return k
}

// FromKeepAliveConfig returns the Config that has the effect k has in the
// standard library on a new socket: Off is !k.Enable, a zero field becomes
// Go's default (15s, 15s, 9), which the standard library writes even when
// Enable is false, and a negative one zero (the socket's value: the system
// default). It fails if the result is not valid: the standard library
// rounds a fractional second up, this package refuses it.
func FromKeepAliveConfig(k net.KeepAliveConfig) (Config, error) {
	c := Config{Idle: k.Idle, Interval: k.Interval, Count: k.Count, Off: !k.Enable}
	switch {
	case c.Idle == 0:
		c.Idle = goDefaultIdle
	case c.Idle < 0:
		c.Idle = 0
	}
	switch {
	case c.Interval == 0:
		c.Interval = goDefaultInterval
	case c.Interval < 0:
		c.Interval = 0
	}
	switch {
	case c.Count == 0:
		c.Count = goDefaultCount
	case c.Count < 0:
		c.Count = 0
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Go's own keepalive defaults (net/dial.go: defaultTCPKeepAliveIdle,
// defaultTCPKeepAliveInterval, defaultTCPKeepAliveCount).
const (
	goDefaultIdle     = 15 * time.Second
	goDefaultInterval = 15 * time.Second
	goDefaultCount    = 9
)
