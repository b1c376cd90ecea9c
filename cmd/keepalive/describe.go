package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keepalive-go/keepalive"
)

// How every command writes a Config and what it does, so that the same
// thing is always said the same way: durations as Go writes them, except in
// the text form; a zero field as "system default"; a zero user timeout as
// "no user timeout".

// describe writes c's fields: "idle 1m0s, interval 10s, count 5, user
// timeout 1m50s". A zero field is written "idle system default", followed
// by its value in sys, when sys has one: "idle system default (2h0m0s)".
func describe(c, sys keepalive.Config) string {
	s := ""
	if c.Off {
		s = "keepalive off, "
	}
	parts := describeFields(c, sys)
	return s + strings.Join(parts[:], ", ")
}

// describeFields writes each of c's fields as describe does, in the order
// of fields.
func describeFields(c, sys keepalive.Config) [len(fields)]string {
	sysDur := func(d time.Duration) string {
		if d == 0 {
			return "system default"
		}
		return fmt.Sprintf("system default (%v)", d)
	}
	var p [len(fields)]string
	p[0], p[1] = "idle "+sysDur(sys.Idle), "interval "+sysDur(sys.Interval)
	if c.Idle != 0 {
		p[0] = fmt.Sprintf("idle %v", c.Idle)
	}
	if c.Interval != 0 {
		p[1] = fmt.Sprintf("interval %v", c.Interval)
	}
	switch {
	case c.Count != 0:
		p[2] = fmt.Sprintf("count %d", c.Count)
	case sys.Count != 0:
		p[2] = fmt.Sprintf("count system default (%d)", sys.Count)
	default:
		p[2] = "count system default"
	}
	p[userTimeoutField] = userTimeout(c.UserTimeout)
	return p
}

// userTimeout writes "user timeout 1m50s", or "no user timeout".
func userTimeout(d time.Duration) string {
	if d == 0 {
		return "no user timeout"
	}
	return fmt.Sprintf("user timeout %v", d)
}

// onOff writes whether keepalive is on.
func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// printLine prints one labelled line of the Config lines below.
func printLine(w io.Writer, label, text string) {
	fmt.Fprintf(w, "%-17s%s\n", label+":", text)
}

// printRequest prints the system defaults, the Config requested and its
// text form, one line each. sysErr is why the system defaults are unknown.
func printRequest(w io.Writer, c, sys keepalive.Config, sysErr error) {
	if sysErr != nil {
		printLine(w, "system defaults", "not readable here: "+message(sysErr))
	} else {
		printLine(w, "system defaults", describe(sys, keepalive.Config{})+" (sysctl net.ipv4.tcp_keepalive_*)")
	}
	printLine(w, "requested", describe(c, sys))
	text := fmt.Sprintf("%q", c.String())
	if c == (keepalive.Config{}) {
		text += " (the zero Config)"
	}
	printLine(w, "as text", text)
}

// printBounds prints the worst-case time to notice a vanished peer for the
// values in force, c with keepalive on or not, against the system
// defaults.
func printBounds(w io.Writer, c keepalive.Config, on bool, sys keepalive.Config, sysErr error) {
	fmt.Fprintln(w, "worst case to notice a vanished peer on an idle connection:")
	if on {
		fmt.Fprintf(w, "  with this config:     %s\n", idleBound(c, sys))
	} else {
		fmt.Fprintf(w, "  with this config:     never: keepalive is off\n")
	}
	if sysErr != nil {
		fmt.Fprintf(w, "  with system defaults: not known here: %s\n", message(sysErr))
	} else {
		fmt.Fprintf(w, "  with system defaults: %s\n", idleBound(keepalive.Config{}, sys))
	}
	fmt.Fprintln(w, "with data left unacknowledged, the connection is given up after:")
	fmt.Fprintf(w, "  with this config:     %s\n", unackedBound(c.UserTimeout))
	fmt.Fprintf(w, "  with system defaults: %s\n", unackedBound(0))
}

// idleBound explains the DetectionTime of c, each zero field at sys's
// value: "1m50s: idle 1m0s + 5 unanswered probes × interval 10s".
func idleBound(c, sys keepalive.Config) string {
	f := c.WithDefaults(sys)
	dt, err := f.DetectionTime()
	if err != nil {
		return "not known here: " + message(err)
	}
	if f.Idle == 0 || f.Interval == 0 || f.Count == 0 {
		return fmt.Sprintf("%v", dt)
	}
	k := int64((dt - f.Idle) / f.Interval)
	s := fmt.Sprintf("%v: idle %v + %s × interval %v", dt, f.Idle, probes(k), f.Interval)
	if c.UserTimeout != 0 {
		s += fmt.Sprintf(" (with the user timeout %v the kernel gives up at the first probe timer after it, whatever the count)", c.UserTimeout)
	}
	return s
}

// unackedBound describes how long data may stay unacknowledged before the
// connection is given up, for a user timeout ut (zero for none).
func unackedBound(ut time.Duration) string {
	if ut != 0 {
		return fmt.Sprintf("%v (the user timeout)", ut)
	}
	rt, err := keepalive.RetransmitTimeout()
	if err != nil {
		return "the system's retransmission limit (" + message(err) + ")"
	}
	return fmt.Sprintf("at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)", rt)
}

// probes writes "1 unanswered probe", "2 unanswered probes".
func probes(n int64) string {
	if n == 1 {
		return "1 unanswered probe"
	}
	return fmt.Sprintf("%d unanswered probes", n)
}
