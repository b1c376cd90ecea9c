package keepalive

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync"
	"syscall"
	"time"
)

// This file holds what every platform shares: the table entry a platform
// describes its options with, the contract each platform implements, the one
// write path and the one read path, and the socket a caller hands in.
//
// # The per-OS contract
//
// Each platform's file implements, for the code here and in keepalive.go,
// system.go, listener.go and suggest.go to call:
//
//	options() *[numOptions]sockopt
//		the platform's table: for each option of a Config, the socket
//		option that carries it (name, level, number), the unit and range
//		of its value, what writing zero means, and why it cannot be set
//		or read back where it cannot
//	setOption(fd uintptr, o option, c Config) error
//		write o's value in c; apply calls it only for an option the table
//		can set, and with zero only for one whose zeroIsDefault is true
//	getOption(fd uintptr, o option) (int64, error)
//		read o, in Config.get's units; read calls it only for an option
//		the table can read
//	checkCombination(c Config) *FieldError
//		a rule across fields that Validate applies, or nil
//	checkTCP(fd uintptr) error
//		nil for a TCP socket, else why not
//	systemDefaults() (Config, error)
//		the values a new socket has, for SystemDefaults and Set
//	retransmitLimit() (time.Duration, error)
//		how long unacknowledged data is retransmitted, for
//		RetransmitTimeout
//	sysctlConf(c Config) (string, error)
//		the lines that make c the machine's defaults, for SysctlConf
//	backoffLimit(idle time.Duration) (time.Duration, bool)
//		for DetectionTime, the worst case of a socket that sets neither
//		Interval nor Count, where such a socket backs its probes off
//		(illumos, Solaris); false elsewhere
//	acceptInherits, defaultsReadable, userTimeoutEndsProbes
//		constants for Platform, ListenConfig and DetectionTime
//
// A platform's errors wrap the system call's (os.NewSyscallError); the code
// here adds the package prefix, the operation, the socket and the option.
//
// The files: sockopt_linux.go; sockopt_windows.go, with winsock.go, its
// options and calls, which compile everywhere so that a Linux test checks
// them; sockopt_aix.go; sockopt_GOOS.go for macOS and each BSD, with
// sockopt_bsd.go for what they share, sysctls_bsd.go for reading defaults
// from sysctls and clockrate_bsd.go for the clock rate that bounds some of
// their timers; sockopt_solaris.go for illumos and Oracle Solaris, with
// sockopt_illumos.go and sockopt_oracle_solaris.go for their numbers and
// abortthreshold.go for their model of Interval and Count, which also
// compiles everywhere; and sockopt_other.go for Plan 9, js/wasm and wasip1,
// which have no option to set. sockopt_unix.go writes and reads a table
// entry on Unix.
//
// # Adding a platform
//
// A new GOOS needs its own sockopt_GOOS.go implementing the contract (the
// compiler names what is missing; a member of a family adds its GOOS to the
// family file's build line instead), a row in the tests' expectation table
// (platforms in platform_test.go) and an entry in the list of targets that
// .ci/run vets and builds the tests for. Nothing shared changes: no code
// outside the platform's file asks which platform it runs on. The tests read
// a platform's sockets back with their own getsockopt calls, in
// helpers_GOOS_test.go and internal/sockopts, files of its own too.

// A sockopt is the socket option that carries one option of a Config on
// this platform, as the platform's table (options) describes it.
type sockopt struct {
	// name is the option as the platform's headers spell it,
	// "TCP_KEEPIDLE". It is empty where the platform has none.
	name string

	// level and opt reach the option with setsockopt and getsockopt.
	level, opt int

	// unit is the unit of a duration's value; zero for Count and
	// SO_KEEPALIVE.
	unit time.Duration

	// min and max bound a valid non-zero value, in units (in probes for
	// Count); both are zero for SO_KEEPALIVE.
	min, max int64

	// zeroIsDefault reports that setOption takes zero to mean the system
	// default: the kernel puts it back when zero is written (macOS,
	// FreeBSD; no user timeout on Linux), or the platform's setOption
	// writes what does. Where it is false, apply writes the default's
	// value in its place.
	zeroIsDefault bool

	// noSet and noGet say why the option cannot be set, or read back;
	// each is empty where it can.
	noSet, noGet string
}

// support returns what the platform does with the option, for Platform.
func (so *sockopt) support() FieldSupport {
	s := FieldSupport{Option: so.name, Settable: so.noSet == "", Readable: so.noGet == ""}
	if s.Settable {
		s.Unit, s.Min, s.Max = so.unit, so.min, so.max
	}
	return s
}

// valueUnit returns the unit of the option's values in Config.get's terms:
// its unit for a duration, 1 for a count and for SO_KEEPALIVE.
func (so *sockopt) valueUnit() int64 {
	return max(int64(so.unit), 1)
}

// errSet returns the error for setting option o, which the platform cannot
// do.
func (so *sockopt) errSet(o option) error {
	what := optionField[o]
	if o == optKeepAlive {
		what = "turning keepalive on and off"
	}
	return unsupported(what, so.noSet)
}

// support returns what the platform does with option o.
func support(o option) FieldSupport { return options()[o].support() }

// apply is the one write path: Set, Disable, Config.Control, and the
// Dialer's and ListenConfig's hooks all write through it. It writes c to the
// socket fd, option by option in the order of option (SO_KEEPALIVE last):
// each non-zero field the platform can set, and SO_KEEPALIVE.
//
// sys says what a zero field of c asks for. Where sys is nil the socket
// holds the system defaults already (a new socket) or the caller leaves
// those options as they are (Disable): a zero field is not written, and
// nothing is read. Where sys is not nil a zero field puts the system default
// back: zero itself where the option takes zero to mean the default
// (zeroIsDefault), else sys's value, and where that is zero too (the
// defaults are not known) the option is left as it is. Then, where the
// platform reads the values back, apply reads them first, writes only the
// options whose value changes, and if a write fails it writes back the
// values the socket had in the options it changed, and returns the error.
func apply(fd uintptr, c Config, sys *Config) error {
	table := options()
	want := c
	if sys != nil {
		for o := range optKeepAlive {
			if want.get(o) == 0 && !table[o].zeroIsDefault {
				want = want.with(o, sys.get(o))
			}
		}
	}
	var have Config
	known := false
	if sys != nil {
		var err error
		have, err = read(fd)
		switch {
		case err == nil:
			known = true
		case !errors.Is(err, errors.ErrUnsupported):
			return err
		} // else the values cannot be read: write them all
	}
	var changed [numOptions]bool
	for o := range numOptions {
		so := &table[o]
		if so.noSet != "" {
			continue // Validate has refused any other value
		}
		v := want.get(o)
		if v == 0 && o != optKeepAlive && (sys == nil || !so.zeroIsDefault) {
			continue
		}
		// SO_KEEPALIVE on is written even where it reads on: a system
		// that probes every connection (net.inet.tcp.always_keepalive on
		// FreeBSD and DragonFly) reports it on whatever the socket holds,
		// and the socket must hold it for when the sysctl is turned off.
		if known && have.get(o) == v && (o != optKeepAlive || v == 0) {
			continue
		}
		err := setOption(fd, o, want)
		if err == nil {
			changed[o] = true
			continue
		}
		err = optionError(o, want, err)
		if !known {
			return err
		}
		for r := range o {
			if !changed[r] {
				continue
			}
			if rerr := setOption(fd, r, have); rerr != nil {
				return fmt.Errorf("%w; restoring the values the socket had failed too: %v", err, optionError(r, have, rerr))
			}
		}
		return err
	}
	return nil
}

// needsDefaults reports whether applying c to a socket that may hold other
// values needs the system defaults: whether it has a zero field that the
// platform writes as the default's value.
func needsDefaults(c Config) bool {
	table := options()
	for o := range optKeepAlive {
		if c.get(o) == 0 && table[o].noSet == "" && !table[o].zeroIsDefault {
			return true
		}
	}
	return false
}

// read returns the options in force on fd. A field the platform cannot set
// is left zero, for the caller to fill in from the system defaults; one it
// can set but not read fails with an error wrapping errors.ErrUnsupported.
func read(fd uintptr) (Config, error) {
	table := options()
	var c Config
	for o := range numOptions {
		so := &table[o]
		if so.noGet != "" {
			if so.noSet == "" {
				return Config{}, unsupported("reading "+optionField[o]+" back", so.noGet)
			}
			continue
		}
		v, err := getOption(fd, o)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", so.name, err)
		}
		c = c.with(o, v)
	}
	return c, nil
}

// optionError describes the failure to set option o to its value in c.
func optionError(o option, c Config, err error) error {
	so := &options()[o]
	name := so.name
	if name == "" {
		name = optionField[o]
	}
	return fmt.Errorf("%s %s: %w", name, formatValue(o, c.get(o), so.unit), err)
}

// socket is a socket reached through any of the forms Set takes.
type socket struct {
	rc  syscall.RawConn
	tcp bool // known to be TCP, needs no checkTCP
	// what describes the socket in errors: a net.Conn, a net.Listener,
	// or the value found inside orig, the value Set was given.
	what, orig any
}

// socketOf finds the socket in s: a net.Conn that is or wraps (through
// NetConn methods) a *net.TCPConn, a syscall.Conn, or a syscall.RawConn. A
// nil one, typed or not, is not a TCP socket: the standard library's
// methods would panic on it.
func socketOf(s any) (socket, error) {
	orig := s
	for {
		if isNil(s) {
			return socket{}, notTCP(orig, s, "")
		}
		nc, ok := s.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		s = nc.NetConn()
	}
	var sk socket
	var err error
	switch v := s.(type) {
	case *net.TCPConn:
		sk.rc, err = v.SyscallConn()
		sk.tcp, sk.what = true, v
	case *net.TCPListener:
		sk.rc, err = v.SyscallConn()
		sk.tcp, sk.what = true, v
	case net.Conn:
		sc, ok := v.(syscall.Conn)
		if !ok {
			return socket{}, notTCP(orig, v, "")
		}
		sk.rc, err = sc.SyscallConn()
		sk.what = v
	case syscall.Conn:
		sk.rc, err = v.SyscallConn()
		sk.what = v
	case syscall.RawConn:
		sk.rc, sk.what = v, v
	default:
		return socket{}, notTCP(orig, s, "")
	}
	if err != nil {
		return socket{}, fmt.Errorf("keepalive: %s: %w", describe(sk.what), err)
	}
	sk.orig = orig
	return sk, nil
}

// isNil reports whether v is nil or holds a nil pointer, map, slice,
// function, channel or interface.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// notTCP returns the ErrNotTCP error for orig, whose innermost connection is
// inner, with the reason why if known: "nil", "nil *net.TCPConn",
// "*net.UDPConn inside *tls.Conn (socket protocol 17)".
func notTCP(orig, inner any, why string) error {
	s := fmt.Sprintf("%T", inner)
	switch {
	case inner == nil:
		s = "nil"
	case isNil(inner):
		s = "nil " + s
	}
	if orig != inner {
		s += fmt.Sprintf(" inside %T", orig)
	}
	if why != "" {
		s += " (" + why + ")"
	}
	return fmt.Errorf("%w: %s", ErrNotTCP, s)
}

// describe names a socket in errors as the standard library does: "tcp
// 127.0.0.1:5432->127.0.0.1:40000", or its type.
func describe(what any) string {
	switch v := what.(type) {
	case string:
		return v
	case net.Conn:
		if l, r := v.LocalAddr(), v.RemoteAddr(); l != nil && r != nil {
			return fmt.Sprintf("%s %s->%s", l.Network(), l, r)
		}
	case net.Listener:
		if a := v.Addr(); a != nil {
			return fmt.Sprintf("%s %s", a.Network(), a)
		}
	}
	return fmt.Sprintf("%T", what)
}

// control runs f on the socket's descriptor after checking, where it is not
// known, that it is a TCP socket.
func (sk socket) control(op string, f func(fd uintptr) error) error {
	var ferr error
	err := sk.rc.Control(func(fd uintptr) {
		if !sk.tcp {
			if err := checkTCP(fd); err != nil {
				ferr = notTCP(sk.orig, sk.what, err.Error())
				return
			}
		}
		ferr = f(fd)
	})
	switch {
	case err != nil:
		return fmt.Errorf("keepalive: %s %s: %w", op, describe(sk.what), err)
	case errors.Is(ferr, ErrNotTCP):
		return ferr
	case ferr != nil:
		return fmt.Errorf("keepalive: %s %s: %w", op, describe(sk.what), ferr)
	}
	return nil
}

// set is Set on sk, for a validated c.
func (sk socket) set(c Config) error {
	sys := &Config{} // zero: the defaults are not known
	if needsDefaults(c) {
		d, err := systemDefaults()
		switch {
		case err == nil:
			sys = &d
		case !errors.Is(err, errors.ErrUnsupported):
			return err
		}
	}
	return sk.control("set", func(fd uintptr) error { return apply(fd, c, sys) })
}

// get is Get on sk.
func (sk socket) get() (Config, error) {
	table := options()
	if so := &table[optKeepAlive]; so.noGet != "" {
		return Config{}, fmt.Errorf("keepalive: %w", unsupported("reading keepalive settings", so.noGet))
	}
	var c Config
	err := sk.control("get", func(fd uintptr) error {
		var err error
		c, err = read(fd)
		return err
	})
	if err != nil {
		return Config{}, err
	}
	// The fields the platform cannot set are at the system default.
	var sys Config
	haveSys := false
	for _, o := range [...]option{optIdle, optInterval, optCount} {
		if table[o].noSet == "" {
			continue
		}
		if !haveSys {
			if sys, err = systemDefaults(); err != nil {
				return Config{}, err
			}
			haveSys = true
		}
		c = c.with(o, sys.get(o))
	}
	return c, nil
}

// disable is Disable on sk.
func (sk socket) disable() error {
	if so := &options()[optKeepAlive]; so.noSet != "" {
		return fmt.Errorf("keepalive: %w", so.errSet(optKeepAlive))
	}
	return sk.control("disable", func(fd uintptr) error { return apply(fd, Config{Off: true}, nil) })
}

// controlNew applies the validated c to the new socket behind rc.
func controlNew(rc syscall.RawConn, c Config, what any) error {
	n := newSetters.Get().(*newSetter)
	n.c = c
	err := rc.Control(n.run)
	if err == nil {
		err = n.err
	}
	n.err = nil
	newSetters.Put(n)
	if err != nil {
		return fmt.Errorf("keepalive: set %s: %w", describe(what), err)
	}
	return nil
}

// newSetter carries apply into the Control method of a RawConn that comes
// as an interface (a Control hook's): a closure passed to it escapes, and
// would cost allocations on every dial and accept; a newSetter, with its
// method value bound once, is reused through newSetters. (setOrClose, which
// has the *net.TCPConn, needs none.)
type newSetter struct {
	c   Config
	err error
	run func(fd uintptr)
}

var newSetters = sync.Pool{New: func() any {
	n := new(newSetter)
	n.run = func(fd uintptr) { n.err = apply(fd, n.c, nil) }
	return n
}}
