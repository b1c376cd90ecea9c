package keepalive

import "time"

// FieldSupport describes what this platform does with one field of a
// Config: whether it can be set and read back, the socket option that
// carries it, and the range [Config.Validate] accepts.
type FieldSupport struct {
	// Option names the socket option that carries the field, as the
	// platform's headers spell it: "TCP_KEEPIDLE", "SO_KEEPALIVE". It is
	// empty where the platform has none.
	Option string

	// Settable reports whether a socket can take a non-zero value of the
	// field (for Off: whether keepalive can be turned on and off). Where
	// it is false, Validate refuses a non-zero value with an error that
	// wraps [errors.ErrUnsupported] and says why.
	Settable bool

	// Readable reports whether [Get] reads the value in force back from
	// the socket. A field that cannot be set is reported at the system
	// default; one that can be set but not read makes Get fail.
	Readable bool

	// Unit is the granularity of a duration field: a valid value is a
	// whole number of Units. It is zero for Count and Off, and where
	// Settable is false.
	Unit time.Duration

	// Min and Max bound a valid non-zero value, in Units (for Count, in
	// probes). Both are zero for Off and where Settable is false.
	Min, Max int64
}

// Capabilities describes what this platform does with a Config, field by
// field, as [Platform] reports it.
type Capabilities struct {
	// Idle, Interval, Count, UserTimeout and Off describe each field of
	// Config.
	Idle, Interval, Count, UserTimeout, Off FieldSupport

	// DefaultsReadable reports whether [SystemDefaults] can read the
	// system's values. Where it cannot, a zero field given to [Set] leaves
	// the socket's value as it is, and [Config.DetectionTime] fails for a
	// Config with a zero field.
	DefaultsReadable bool

	// AcceptInherits reports that a socket accepted from a listening
	// socket starts with its keepalive settings, so that [ListenConfig]
	// sets the Config once, on the listening socket; where it is false,
	// ListenConfig sets it on every accepted connection.
	AcceptInherits bool
}

// Platform returns what the platform the program runs on does with a
// Config, so that a caller can choose before dialing (whether a user
// timeout can be set here, in what unit, up to what value).
// [Config.Validate] checks a Config against the same answers.
//
// Note that on Windows the answer comes from trying the options on a socket
// the first time it is needed, since Windows before 10 version 1709 (and
// Wine) lack them whatever their version number says.
//
// Note that on FreeBSD whether UserTimeout can be set comes the same way,
// from asking a new socket for TCP_MAXUNACKTIME once, and that on FreeBSD,
// NetBSD and DragonFly the limits of Idle and Interval follow from the
// kernel's clock rate (kern.clockrate), read once.
//
// Note that on Oracle Solaris the answer depends on the release, found the
// first time it is needed from uname and a new socket: releases before 11.4
// cannot set Interval and Count, and report them Readable only to say that
// the system's keepalive abort threshold is in force.
func Platform() Capabilities {
	return Capabilities{
		Idle:             support(optIdle),
		Interval:         support(optInterval),
		Count:            support(optCount),
		UserTimeout:      support(optUserTimeout),
		Off:              support(optKeepAlive),
		DefaultsReadable: defaultsReadable,
		AcceptInherits:   acceptInherits,
	}
}
