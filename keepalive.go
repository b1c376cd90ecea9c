// Package keepalive sets TCP keepalive per socket: the idle time before the
// first probe, the time between probes, the number of unanswered probes
// before the connection is declared dead, and (on Linux) the time sent data
// may stay unacknowledged.
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
// # Zero fields and net.KeepAliveConfig
//
// A zero field in [Config] leaves the operating system's value in force: on
// Linux the sysctls net.ipv4.tcp_keepalive_time, tcp_keepalive_intvl and
// tcp_keepalive_probes, and no user timeout. This differs on purpose from
// [net.KeepAliveConfig], where a zero field means Go's own default (15 s,
// 15 s, 9). [Config.KeepAliveConfig] and [FromKeepAliveConfig] convert
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
// about 15 minutes by default (net.ipv4.tcp_retries2, which
// [RetransmitTimeout] turns into time). [Config.UserTimeout]
// (TCP_USER_TIMEOUT) bounds that time. When it is set the kernel also uses it
// instead of Count to decide when unanswered keepalive probes kill the
// connection; [Config.WithUserTimeout] derives the usual value,
// Idle + Interval*Count.
//
// # Configuration from text
//
// A Config has a text form, "idle=60s,interval=5s,count=3,user-timeout=75s",
// that [ParseConfig] reads and [Config.String] writes. Config implements
// [encoding.TextMarshaler] and [encoding.TextUnmarshaler], so it is a string
// in JSON or YAML, an environment variable, or a command-line flag through
// [flag.TextVar]. [Suggest] chooses a Config from what is known of a path:
// how long its firewalls or load balancers keep an idle flow, and how soon a
// vanished peer must be noticed.
//
// # The system's view
//
// [SystemDefaults] reads the values a socket has when it sets none itself,
// and [RetransmitTimeout] how long unacknowledged data is retransmitted;
// [Config.DetectionTime] is the worst-case time a Config takes to notice a
// vanished peer, with its zero fields filled from the system.
// [Config.SysctlConf] writes the sysctl lines that would make a Config the
// machine-wide default.
//
// # Platforms
//
// Linux is the full implementation: every field, the Control hook, [Get],
// listening sockets whose accepted connections inherit the options, so
// nothing is done per accept, and the system's view. Elsewhere [Set],
// [Dialer] and [ListenConfig] apply Idle, Interval and Count through
// [net.TCPConn.SetKeepAliveConfig]
// where the operating system has them; whatever a platform cannot do yields
// an error that wraps [errors.ErrUnsupported] and names the platform, never a
// silent success.
package keepalive

import (
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"
)

// Config holds per-socket TCP keepalive settings. Applying a Config always
// turns keepalive (SO_KEEPALIVE) on.
//
// A zero field leaves the operating system's value in force (see the package
// documentation); this differs from [net.KeepAliveConfig], where zero means
// 15 s, 15 s and 9. The zero Config turns keepalive on with the system's
// values.
type Config struct {
	// Idle is how long the connection must be idle before the first
	// keepalive probe is sent (TCP_KEEPIDLE). It must be a whole number of
	// seconds from 1s to 32767s. Zero leaves the system default
	// (net.ipv4.tcp_keepalive_time on Linux, usually 2 hours).
	Idle time.Duration

	// Interval is the time between unanswered keepalive probes
	// (TCP_KEEPINTVL). It must be a whole number of seconds from 1s to
	// 32767s. Zero leaves the system default (net.ipv4.tcp_keepalive_intvl
	// on Linux, usually 75 seconds).
	Interval time.Duration

	// Count is how many probes may go unanswered before the connection is
	// declared dead (TCP_KEEPCNT), from 1 to 127. Zero leaves the system
	// default (net.ipv4.tcp_keepalive_probes on Linux, usually 9). The
	// kernel ignores Count when UserTimeout is set.
	Count int

	// UserTimeout is the longest time sent data may stay unacknowledged
	// before the connection is closed (TCP_USER_TIMEOUT). It must be a
	// whole number of milliseconds up to 2147483647ms. Linux counts it from
	// the first retransmission, one retransmission timeout (at least 200 ms)
	// after the data was sent. When it is set, the kernel also closes an
	// idle connection whose probes go unanswered once UserTimeout has passed
	// since the peer was last heard from, instead of after Count probes.
	// Zero sets no user timeout.
	//
	// Note that on Linux a Multipath TCP socket refuses TCP_USER_TIMEOUT, so
	// [Dialer] and [ListenConfig] use plain TCP when UserTimeout is set.
	// Other platforms have no such option: a non-zero UserTimeout fails
	// there with an error wrapping [errors.ErrUnsupported].
	UserTimeout time.Duration

	// Off turns keepalive (SO_KEEPALIVE) off; zero leaves it on.
	Off bool
}

// The kernel's limits (Linux include/net/tcp.h: MAX_TCP_KEEPIDLE,
// MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT; TCP_USER_TIMEOUT takes a
// non-negative int of milliseconds).
const (
	maxIdle        = 32767 * time.Second
	maxInterval    = 32767 * time.Second
	maxCount       = 127
	maxUserTimeout = (1<<31 - 1) * time.Millisecond
)

// ErrNotTCP is returned, wrapped, by [Set], [Get] and [Disable] for a
// connection that is not TCP and does not wrap one.
var ErrNotTCP = errors.New("keepalive: not a TCP connection")

// Validate reports whether the kernel can hold c exactly. It refuses negative
// values, an Idle or Interval that is not a whole number of seconds, a
// UserTimeout that is not a whole number of milliseconds, values beyond the
// kernel's limits, and fields this platform cannot set (wrapping
// [errors.ErrUnsupported]). The error names the field and the valid range.
// Nothing is ever rounded or clamped.
func (c Config) Validate() error {
	if err := checkDuration("Idle", c.Idle, maxIdle, false); err != nil {
		return err
	}
	if err := checkDuration("Interval", c.Interval, maxInterval, false); err != nil {
		return err
	}
	if c.Count < 0 || c.Count > maxCount {
		return fmt.Errorf("keepalive: Count %d is out of range 1..%d", c.Count, maxCount)
	}
	if err := checkDuration("UserTimeout", c.UserTimeout, maxUserTimeout, true); err != nil {
		return err
	}
	for i, v := range c.values() {
		if v != 0 && !platformSets(option(i)) {
			return unsupported(option(i))
		}
	}
	return nil
}

func checkDuration(field string, d, max time.Duration, ms bool) error {
	unit, sym, name := time.Second, "s", "seconds"
	if ms {
		unit, sym, name = time.Millisecond, "ms", "milliseconds"
	}
	if d < 0 || d > max {
		return fmt.Errorf("keepalive: %s %v is out of range 1%s..%d%s", field, d, sym, max/unit, sym)
	}
	if d%unit != 0 {
		return fmt.Errorf("keepalive: %s %v is not a whole number of %s", field, d, name)
	}
	return nil
}

// option indexes the table of socket options in the per-OS files.
type option int

const (
	optKeepAlive   option = iota // SO_KEEPALIVE, 0 or 1
	optIdle                      // TCP_KEEPIDLE, seconds
	optInterval                  // TCP_KEEPINTVL, seconds
	optCount                     // TCP_KEEPCNT
	optUserTimeout               // TCP_USER_TIMEOUT, milliseconds
	numOptions
)

var optionField = [numOptions]string{"keepalive", "Idle", "Interval", "Count", "UserTimeout"}

// sockopt is one entry of a platform's option table. A zero entry means the
// platform cannot set or read the option on a file descriptor.
type sockopt struct {
	name  string // as in the C headers, for errors
	level int
	opt   int
	// absent is the getsockopt error that means the option cannot be in
	// force on this socket, read as zero.
	absent error
}

// values returns c in the kernel's units, indexed by option.
func (c Config) values() [numOptions]int {
	return [numOptions]int{
		optKeepAlive:   1,
		optIdle:        int(c.Idle / time.Second),
		optInterval:    int(c.Interval / time.Second),
		optCount:       c.Count,
		optUserTimeout: int(c.UserTimeout / time.Millisecond),
	}
}

func unsupported(o option) error {
	return fmt.Errorf("keepalive: %s is not supported on %s/%s: %w", optionField[o], runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}

// Control sets c on the socket behind rc. It has the signature of
// [net.Dialer.Control] and [net.ListenConfig.Control], so it can be grafted
// onto a caller's own dialer or listen config; it acts only on the networks
// "tcp", "tcp4" and "tcp6" and returns nil for any other. The Config is
// validated first, so an invalid one leaves the socket untouched.
//
// Note that a [net.Dialer] or [net.ListenConfig] whose KeepAlive is zero
// overwrites these settings with Go's defaults after connect and after every
// accept: set its KeepAlive to -1, or use [Dialer] or [ListenConfig], which
// do. Control is ignored by the standard library when ControlContext is set.
//
// Note that on Linux sockets accepted from a listening socket inherit its
// settings. Control is implemented on Linux only; elsewhere it returns an
// error wrapping [errors.ErrUnsupported].
func (c Config) Control(network, address string, rc syscall.RawConn) error {
	if !isTCP(network) {
		return nil
	}
	if err := c.Validate(); err != nil {
		return err
	}
	return setRaw(rc, c.values(), true)
}

// setRaw sets the non-zero values on the socket behind rc, walking the
// platform's option table; SO_KEEPALIVE is set when enable is true.
func setRaw(rc syscall.RawConn, v [numOptions]int, enable bool) error {
	if err := checkTable(v, enable); err != nil {
		return err
	}
	var serr error
	err := rc.Control(func(fd uintptr) {
		for o, so := range sockopts {
			if v[o] == 0 && (o != int(optKeepAlive) || !enable) {
				continue
			}
			if err := setsockoptInt(fd, so.level, so.opt, v[o]); err != nil {
				serr = fmt.Errorf("keepalive: %s: %w", so.name, os.NewSyscallError("setsockopt", err))
				return
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// checkTable reports whether the option table has every option setRaw would
// set for v and enable.
func checkTable(v [numOptions]int, enable bool) error {
	for o := range numOptions {
		if (v[o] != 0 || o == optKeepAlive && enable) && sockopts[o].name == "" {
			return unsupported(o)
		}
	}
	return nil
}

// Settings is the keepalive state of a socket as the kernel reports it.
type Settings struct {
	// Enabled reports whether keepalive (SO_KEEPALIVE) is on.
	Enabled bool

	// Config holds the values in force. A value the socket does not set
	// itself reports the system default; UserTimeout is zero when none is
	// in force. The values are reported even when Enabled is false.
	Config Config
}

// Set applies c to an established connection: conn must be a
// [*net.TCPConn], or wrap one through a NetConn method (as [*tls.Conn]
// does), else Set returns an error wrapping [ErrNotTCP]. The Config is
// validated before the socket is touched. A zero field leaves the socket's
// current value: the system default on a socket that never had it set.
func Set(conn net.Conn, c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	tc, err := tcpConn(conn)
	if err != nil {
		return err
	}
	return set(tc, c)
}

// set applies a validated c to tc. Idle, Interval and Count go through the
// standard library, which knows each platform's options and spends no
// allocation; only UserTimeout needs the option table.
func set(tc *net.TCPConn, c Config) error {
	if err := tc.SetKeepAliveConfig(c.KeepAliveConfig()); err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	if c.UserTimeout == 0 {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	var v [numOptions]int
	v[optUserTimeout] = c.values()[optUserTimeout]
	return setRaw(rc, v, false)
}

// Get returns the keepalive settings in force on conn as the kernel reports
// them. conn is unwrapped as for [Set]. After a successful Set, Get reports
// every non-zero field of the Config that was set.
//
// Note that a Multipath TCP socket on Linux has no user timeout: Get reports
// UserTimeout zero for it. Get is implemented on Linux only; elsewhere it
// returns an error wrapping [errors.ErrUnsupported].
func Get(conn net.Conn) (Settings, error) {
	tc, err := tcpConn(conn)
	if err != nil {
		return Settings{}, err
	}
	for o, so := range sockopts {
		if so.name == "" {
			return Settings{}, fmt.Errorf("keepalive: reading %s is not supported on %s/%s: %w", optionField[o], runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
		}
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return Settings{}, err
	}
	var v [numOptions]int
	var gerr error
	err = rc.Control(func(fd uintptr) {
		for o, so := range sockopts {
			n, err := getsockoptInt(fd, so.level, so.opt)
			if err != nil && (so.absent == nil || !errors.Is(err, so.absent)) {
				gerr = fmt.Errorf("keepalive: %s: %w", so.name, os.NewSyscallError("getsockopt", err))
				return
			}
			v[o] = n
		}
	})
	if err != nil {
		return Settings{}, err
	}
	if gerr != nil {
		return Settings{}, gerr
	}
	return Settings{
		Enabled: v[optKeepAlive] != 0,
		Config: Config{
			Idle:        time.Duration(v[optIdle]) * time.Second,
			Interval:    time.Duration(v[optInterval]) * time.Second,
			Count:       v[optCount],
			UserTimeout: time.Duration(v[optUserTimeout]) * time.Millisecond,
		},
	}, nil
}

// Disable turns keepalive (SO_KEEPALIVE) off on conn, unwrapped as for
// [Set]. The other values stay as they are and take effect again if
// keepalive is turned back on; a user timeout stays in force.
func Disable(conn net.Conn) error {
	tc, err := tcpConn(conn)
	if err != nil {
		return err
	}
	if err := tc.SetKeepAlive(false); err != nil {
		return fmt.Errorf("keepalive: %w", err)
	}
	return nil
}

// tcpConn finds the *net.TCPConn in conn, following NetConn methods.
func tcpConn(conn net.Conn) (*net.TCPConn, error) {
	orig := conn
	for conn != nil {
		switch c := conn.(type) {
		case *net.TCPConn:
			return c, nil
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			conn = nil
		}
	}
	return nil, fmt.Errorf("%w: %T", ErrNotTCP, orig)
}

func isTCP(network string) bool {
	return network == "tcp" || network == "tcp4" || network == "tcp6"
}

// KeepAliveConfig returns c as a [net.KeepAliveConfig] with Enable set. Each
// zero field becomes -1, which the standard library reads as "leave the
// current value", so the result keeps this package's meaning of zero.
// UserTimeout has no counterpart in net.KeepAliveConfig and is not carried.
func (c Config) KeepAliveConfig() net.KeepAliveConfig {
	k := net.KeepAliveConfig{Enable: true, Idle: c.Idle, Interval: c.Interval, Count: c.Count}
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
// standard library: a zero field becomes Go's default (15s, 15s, 9), a
// negative one zero (the current, system value). It fails if k.Enable is
// false, since applying a Config always enables keepalive, or if the result
// is not valid: the standard library rounds a fractional second up, this
// package refuses it.
func FromKeepAliveConfig(k net.KeepAliveConfig) (Config, error) {
	if !k.Enable {
		return Config{}, errors.New("keepalive: net.KeepAliveConfig has Enable false; a Config always enables keepalive")
	}
	c := Config{Idle: k.Idle, Interval: k.Interval, Count: k.Count}
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
	return c, c.Validate()
}

// Go's own keepalive defaults (net/dial.go: defaultTCPKeepAliveIdle,
// defaultTCPKeepAliveInterval, defaultTCPKeepAliveCount).
const (
	goDefaultIdle     = 15 * time.Second
	goDefaultInterval = 15 * time.Second
	goDefaultCount    = 9
)
