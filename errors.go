package keepalive

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// The reasons a [FieldError] gives for a value the platform could set but
// not exactly.
var (
	// ErrOutOfRange means the value is negative or beyond the platform's
	// limits.
	ErrOutOfRange = errors.New("out of range")

	// ErrNotWhole means the value is not a whole number of the platform's
	// unit for the field, and would have to be rounded.
	ErrNotWhole = errors.New("not a whole number of the unit")
)

// A FieldError describes one field of a Config that cannot be applied on
// this platform.
type FieldError struct {
	// Field is the Config field at fault: "Idle", "Interval", "Count",
	// "UserTimeout" or "Off"; or "Idle+Interval*Count" where the platform
	// limits their sum (see [Config.Validate]).
	Field string

	// Value is the field's value, as an int64: for Idle, Interval,
	// UserTimeout and Idle+Interval*Count a time.Duration
	// (time.Duration(Value) is the duration), for Count the number of
	// probes, for Off 1 when Off is true and 0 when it is false. For
	// Idle+Interval*Count it is the sum, each zero field at the system
	// default, or math.MaxInt64 where the sum overflows.
	Value int64

	// Min and Max bound a valid non-zero value, in Value's terms:
	// time.Duration(Max) is the largest valid Idle. Both are zero when
	// the platform cannot set the field.
	Min, Max int64

	// Err is the reason: [ErrOutOfRange], [ErrNotWhole], or an error that
	// wraps [errors.ErrUnsupported] and says why the platform cannot set
	// the field.
	Err error

	// o and unit are the kind and the unit of the field's values on this
	// platform, which the message writes them in: "32768s", "1.5s",
	// "2592000000ms", "128".
	o    option
	unit time.Duration
	// valueText, where not empty, is the value as the message writes it,
	// for a sum that overflows: "32767s+32767s*4294967296".
	valueText string
	// with names what the range depends on, for a range set by another
	// field: "with Interval 60s: ...".
	with string
}

func (e *FieldError) Error() string { return "keepalive: " + e.text() }

// text is the message without the package prefix.
func (e *FieldError) text() string {
	value := e.valueText
	if value == "" {
		value = e.format(e.Value)
	}
	switch {
	case errors.Is(e.Err, ErrOutOfRange):
		s := fmt.Sprintf("%s %s is out of range %s..%s", e.Field, value, e.format(e.Min), e.format(e.Max))
		if e.with != "" {
			s += " " + e.with
		}
		return s
	case errors.Is(e.Err, ErrNotWhole):
		return fmt.Sprintf("%s %s is not a whole number of %s", e.Field, value, unitName(e.unit))
	case e.Err != nil:
		return e.Err.Error()
	}
	return e.Field + " " + value + " is invalid"
}

// format writes v, in Value's terms, as the message does.
func (e *FieldError) format(v int64) string {
	if e.o == optKeepAlive {
		return strconv.FormatBool(v != 0)
	}
	return formatValue(e.o, v, e.unit)
}

func (e *FieldError) Unwrap() error { return e.Err }

// A ValidationError lists every field of a Config that cannot be applied.
// [Config.Validate] returns one; [errors.As] finds it, or any one of its
// FieldErrors, in the error of every function that validates.
type ValidationError struct {
	// Errors holds one FieldError per field at fault, in the order Idle,
	// Interval, Count, UserTimeout, Off. It is never empty.
	Errors []*FieldError
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("keepalive: ")
	for i, fe := range e.Errors {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(fe.text())
	}
	return b.String()
}

// Unwrap returns the FieldErrors, for [errors.Is] and [errors.As].
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, fe := range e.Errors {
		errs[i] = fe
	}
	return errs
}

// unsupportedError says why this platform cannot do something; it wraps
// [errors.ErrUnsupported].
type unsupportedError struct {
	what string // "UserTimeout", "reading Idle back"
	why  string // the platform's reason, may be empty
}

func (e *unsupportedError) Error() string {
	s := e.what + " is not supported on " + runtime.GOOS + "/" + runtime.GOARCH
	if e.why != "" {
		s += ": " + e.why
	}
	return s
}

func (e *unsupportedError) Unwrap() error { return errors.ErrUnsupported }

// unsupported returns the error for what, which this platform cannot do,
// with the reason why.
func unsupported(what, why string) error {
	return &unsupportedError{what: what, why: why}
}

// formatValue writes v, a value of option o as Config.get returns it, in
// the text form's notation and in unit: "32768s" for 32768 seconds in
// seconds, "1.5s", "2592000000ms" for 30 days in milliseconds. A zero unit
// writes a duration as the text form does.
func formatValue(o option, v int64, unit time.Duration) string {
	switch o {
	case optCount:
		return strconv.FormatInt(v, 10)
	case optKeepAlive:
		if v == 0 {
			return "off"
		}
		return "on"
	}
	if unit <= 0 {
		return string(appendDuration(nil, time.Duration(v)))
	}
	u, sym := notation(unit)
	b := make([]byte, 0, 24)
	if v < 0 {
		b = append(b, '-')
	}
	// The magnitude as a uint64: -MinInt64 does not fit an int64.
	m := uint64(v)
	if v < 0 {
		m = -m
	}
	b = strconv.AppendUint(b, m/uint64(u), 10)
	if frac := m % uint64(u); frac != 0 {
		digits := len(strconv.FormatInt(int64(u), 10)) - 1
		f := strconv.FormatUint(frac, 10)
		f = strings.Repeat("0", digits-len(f)) + f
		b = append(b, '.')
		b = append(b, strings.TrimRight(f, "0")...)
	}
	return string(append(b, sym...))
}

// notation returns the largest of the units the text form writes (s, ms,
// µs, ns) that divides unit, and its symbol.
func notation(unit time.Duration) (time.Duration, string) {
	switch {
	case unit%time.Second == 0:
		return time.Second, "s"
	case unit%time.Millisecond == 0:
		return time.Millisecond, "ms"
	case unit%time.Microsecond == 0:
		return time.Microsecond, "µs"
	}
	return time.Nanosecond, "ns"
}

// unitName names unit in the plural, for "not a whole number of seconds".
func unitName(unit time.Duration) string {
	switch unit {
	case time.Second:
		return "seconds"
	case time.Millisecond:
		return "milliseconds"
	case 0:
		return "the unit"
	}
	return "units of " + unit.String()
}
