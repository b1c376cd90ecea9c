package keepalive

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
)

// This file holds the one apply path and the one read path. They walk the
// options of a Config through the functions each platform's sockopt file
// provides:
//
//	support(o option) Support
//		what the platform does with o
//	setOption(fd uintptr, o option, c, sys Config) error
//		write o's value in c; a zero Idle, Interval or Count means the
//		system default, which sys holds where it is known (a zero field
//		of sys: not known); a zero UserTimeout means none
//	getOption(fd uintptr, o option) (int64, error)
//		read o, in Config.get's units
//	checkCombination(c Config) *FieldError
//		a rule across fields that Validate must apply, or nil
//	checkTCP(fd uintptr) error
//		nil for a TCP socket, else why not
//	systemDefaults() (Config, error)
//		the values a new socket has
//	acceptInherits, defaultsReadable, userTimeoutEndsProbes
//		constants for Platform and DetectionTime
//
// A platform's errors wrap the system call's (os.NewSyscallError); the
// shared code adds the package prefix, the operation, the socket and the
// option.

// setNew applies c to a new socket, whose options hold the system defaults:
// every non-zero field, and SO_KEEPALIVE.
func setNew(fd uintptr, c Config) error {
	for o := range numOptions {
		if o != optKeepAlive && c.get(o) == 0 {
			continue
		}
		if err := setOption(fd, o, c, Config{}); err != nil {
			return optionError(o, c, err)
		}
	}
	return nil
}

// write applies c to a socket whose options hold have when known is true,
// each zero field of c meaning the default that sys holds (haveSys false:
// not known). It writes only the options whose value differs, and
// SO_KEEPALIVE when c turns it on; when the values in force are not known
// it writes every option the platform can set. A zero field whose default
// is not known is left as it is, and options the platform cannot set are
// skipped: Validate has refused any other value for them.
func write(fd uintptr, have, c, sys Config, known, haveSys bool) error {
	for o := range numOptions {
		if !support(o).Set {
			continue
		}
		v := c.get(o)
		if v == 0 && (o == optIdle || o == optInterval || o == optCount) {
			if !haveSys {
				continue
			}
			v = sys.get(o)
		}
		// SO_KEEPALIVE on is written even where it reads on: a system
		// that probes every connection (net.inet.tcp.always_keepalive on
		// FreeBSD and DragonFly) reports it on whatever the socket holds,
		// and the socket must hold it for when the sysctl is turned off.
		if known && have.get(o) == v && (o != optKeepAlive || v == 0) {
			continue
		}
		if err := setOption(fd, o, c, sys); err != nil {
			return optionError(o, c.with(o, v), err)
		}
	}
	return nil
}

// setLive applies c to a socket that may hold values already, each zero
// field of c meaning the default in sys when haveSys is true, and left as it
// is otherwise. Where the values can be read, a failure restores those the
// socket had.
func setLive(fd uintptr, c, sys Config, haveSys bool) error {
	have, err := read(fd)
	known := err == nil
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return err
	}
	err = write(fd, have, c, sys, known, haveSys)
	if err == nil || !known {
		return err
	}
	now, rerr := read(fd)
	if rerr == nil {
		rerr = write(fd, now, have, sys, true, haveSys)
	}
	if rerr != nil {
		return fmt.Errorf("%w; restoring the values the socket had failed too: %v", err, rerr)
	}
	return err
}

// read returns the options in force on fd. A field the platform cannot set
// is left zero, for the caller to fill in from the system defaults; one it
// can set but not read fails with an error wrapping errors.ErrUnsupported.
func read(fd uintptr) (Config, error) {
	var c Config
	for o := range numOptions {
		s := support(o)
		if !s.Get {
			if s.Set {
				return Config{}, unsupported("reading "+optionField[o]+" back", s.whyGet)
			}
			continue
		}
		v, err := getOption(fd, o)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", s.Option, err)
		}
		c = c.with(o, v)
	}
	return c, nil
}

// optionError describes the failure to set option o to its value in c.
func optionError(o option, c Config, err error) error {
	s := support(o)
	name := s.Option
	if name == "" {
		name = optionField[o]
	}
	if o == optKeepAlive {
		return fmt.Errorf("%s %s: %w", name, formatValue(o, c.get(o), 0), err)
	}
	return fmt.Errorf("%s %s: %w", name, formatValue(o, c.get(o), s.Unit), err)
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
// NetConn methods) a *net.TCPConn, a syscall.Conn, or a syscall.RawConn.
func socketOf(s any) (socket, error) {
	orig := s
	for {
		nc, ok := s.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		if s = nc.NetConn(); s == nil {
			return socket{}, notTCP(orig, nil, "")
		}
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

// notTCP returns the ErrNotTCP error for orig, whose innermost connection is
// inner, with the reason why if known.
func notTCP(orig, inner any, why string) error {
	s := fmt.Sprintf("%T", inner)
	if inner == nil {
		s = "nil"
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
	var sys Config
	haveSys := false
	if c.Idle == 0 || c.Interval == 0 || c.Count == 0 {
		var err error
		sys, err = systemDefaults()
		switch {
		case err == nil:
			haveSys = true
		case !errors.Is(err, errors.ErrUnsupported):
			return err
		}
	}
	return sk.control("set", func(fd uintptr) error {
		return setLive(fd, c, sys, haveSys)
	})
}

// get is Get on sk.
func (sk socket) get() (Config, error) {
	if s := support(optKeepAlive); !s.Get {
		return Config{}, fmt.Errorf("keepalive: %w", unsupported("reading keepalive settings", s.whyGet))
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
		if support(o).Set {
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
	if s := support(optKeepAlive); !s.Set {
		return fmt.Errorf("keepalive: %w", s.errSet(optionField[optKeepAlive]))
	}
	return sk.control("disable", func(fd uintptr) error {
		if err := setOption(fd, optKeepAlive, Config{Off: true}, Config{}); err != nil {
			return optionError(optKeepAlive, Config{Off: true}, err)
		}
		return nil
	})
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

// newSetter carries setNew into RawConn.Control. A closure would cost three
// allocations on every dial and accept; a newSetter, with its method value
// bound once, is reused through newSetters.
type newSetter struct {
	c   Config
	err error
	run func(fd uintptr)
}

var newSetters = sync.Pool{New: func() any {
	n := new(newSetter)
	n.run = func(fd uintptr) { n.err = setNew(fd, n.c) }
	return n
}}
