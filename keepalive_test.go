package keepalive_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// The tests of Config's own methods, on every platform, with their cases
// derived from Platform and the table of platform_test.go. Linux's exact
// messages and limits are in keepalive_linux_test.go.

// inUnit writes v, a duration in nanoseconds, as the package writes a value
// of a field whose unit is unit: in the largest of s, ms, µs and ns that
// divides unit, with a decimal fraction where v is not a whole number of
// it ("32768s", "1.5s", "2147483648ms").
func inUnit(v int64, unit time.Duration) string {
	u, sym := time.Nanosecond, "ns"
	switch {
	case unit%time.Second == 0:
		u, sym = time.Second, "s"
	case unit%time.Millisecond == 0:
		u, sym = time.Millisecond, "ms"
	case unit%time.Microsecond == 0:
		u, sym = time.Microsecond, "µs"
	}
	m := uint64(v)
	if v < 0 {
		m = -m
	}
	s := strconv.FormatUint(m/uint64(u), 10)
	if frac := m % uint64(u); frac != 0 {
		digits := len(strconv.FormatInt(int64(u), 10)) - 1
		s += "." + strings.TrimRight(fmt.Sprintf("%0*d", digits, frac), "0")
	}
	if v < 0 {
		s = "-" + s
	}
	return s + sym
}

// valueText writes v, a value of the field name in the units of f, as the
// package writes it.
func valueText(f keepalive.FieldSupport, name string, v int64) string {
	if name == "Count" {
		return strconv.FormatInt(v, 10)
	}
	return inUnit(v, f.Unit)
}

// unitOf returns the unit of f's values: f.Unit for a duration, 1 for a
// count.
func unitOf(f keepalive.FieldSupport) int64 {
	if f.Unit == 0 {
		return 1
	}
	return int64(f.Unit)
}

// withValue returns c with the field name at v: nanoseconds for a
// duration, probes for Count.
func withValue(c keepalive.Config, name string, v int64) keepalive.Config {
	switch name {
	case "Idle":
		c.Idle = time.Duration(v)
	case "Interval":
		c.Interval = time.Duration(v)
	case "Count":
		c.Count = int(v)
	case "UserTimeout":
		c.UserTimeout = time.Duration(v)
	}
	return c
}

// fieldError is what a FieldError must hold.
type fieldError struct {
	Field           string
	Value, Min, Max int64
	Is              error  // ErrOutOfRange, ErrNotWhole or errors.ErrUnsupported
	Text            string // the message, without the package's prefix
}

// wantOf returns what fe holds, in the terms of fieldError; Value is left
// zero for a field the platform cannot set.
func wantOf(fe *keepalive.FieldError) fieldError {
	w := fieldError{Field: fe.Field, Value: fe.Value, Min: fe.Min, Max: fe.Max, Text: strings.TrimPrefix(fe.Error(), "keepalive: ")}
	for _, is := range []error{keepalive.ErrOutOfRange, keepalive.ErrNotWhole, errors.ErrUnsupported} {
		if errors.Is(fe, is) {
			w.Is = is
		}
	}
	if w.Is == errors.ErrUnsupported {
		w.Value = 0
	}
	return w
}

// rangeError is the error for v, the value of the field name, outside f's
// range.
func rangeError(f keepalive.FieldSupport, name string, v int64) fieldError {
	u := unitOf(f)
	e := fieldError{Field: name, Value: v, Min: f.Min * u, Max: f.Max * u, Is: keepalive.ErrOutOfRange}
	e.Text = fmt.Sprintf("%s %s is out of range %s..%s", name, valueText(f, name, v), valueText(f, name, e.Min), valueText(f, name, e.Max))
	return e
}

// wholeError is the error for v, the value of the field name, which is not
// a whole number of f's unit.
func wholeError(f keepalive.FieldSupport, name string, v int64) fieldError {
	e := rangeError(f, name, v)
	unit := "units of " + f.Unit.String()
	switch f.Unit {
	case time.Second:
		unit = "seconds"
	case time.Millisecond:
		unit = "milliseconds"
	}
	e.Is = keepalive.ErrNotWhole
	e.Text = fmt.Sprintf("%s %s is not a whole number of %s", name, valueText(f, name, v), unit)
	return e
}

// unsupportedError is the error for a field the platform cannot set.
func unsupportedError(f namedField) fieldError {
	return fieldError{Field: f.name, Is: errors.ErrUnsupported, Text: unsupportedText(f.name, f.why)}
}

// offError is the error for a Config on a platform that cannot turn
// keepalive on and off (Plan 9, js, wasip1), which refuses every Config.
func offError(w platform) []fieldError {
	if w.Off.Settable {
		return nil
	}
	return []fieldError{{Field: "Off", Is: errors.ErrUnsupported, Text: unsupportedText("turning keepalive on and off", w.Off.why)}}
}

// spanError returns the error for c where the platform bounds Idle +
// Interval*Count (each zero field at sys) and c passes the bound; nil
// elsewhere.
func spanError(w platform, c, sys keepalive.Config) []fieldError {
	if w.span == 0 {
		return nil
	}
	f := c.WithDefaults(sys)
	var v int64
	var text string
	switch {
	case f.Interval != 0 && time.Duration(f.Count) > (math.MaxInt64-f.Idle)/f.Interval:
		v = math.MaxInt64
		text = fmt.Sprintf("%s+%s*%d", inUnit(int64(f.Idle), time.Second), inUnit(int64(f.Interval), time.Second), f.Count)
	case f.Idle+f.Interval*time.Duration(f.Count) > w.span:
		v = int64(f.Idle + f.Interval*time.Duration(f.Count))
		text = inUnit(v, time.Second)
	default:
		return nil
	}
	e := fieldError{Field: "Idle+Interval*Count", Value: v, Max: int64(w.span), Is: keepalive.ErrOutOfRange}
	e.Text = fmt.Sprintf("%s %s is out of range 0s..%s", e.Field, text, inUnit(int64(w.span), time.Second))
	return []fieldError{e}
}

// assertValidation checks that err, from validating a Config, holds want:
// nil for none, else a *ValidationError with exactly these FieldErrors, in
// order.
func assertValidation(t *testing.T, want []fieldError, err error) {
	t.Helper()
	if len(want) == 0 {
		assert.NoError(t, err)
		return
	}
	texts := make([]string, len(want))
	for i, w := range want {
		texts[i] = w.Text
	}
	assert.EqualError(t, err, "keepalive: "+strings.Join(texts, "; "))
	var ve *keepalive.ValidationError
	if !assert.ErrorAs(t, err, &ve) {
		return
	}
	got := make([]fieldError, len(ve.Errors))
	for i, fe := range ve.Errors {
		got[i] = wantOf(fe)
	}
	assert.Equal(t, want, got)
	var fe *keepalive.FieldError
	if assert.ErrorAs(t, err, &fe, "errors.As finds the first FieldError") {
		assert.Same(t, ve.Errors[0], fe)
	}
	for _, is := range []error{keepalive.ErrOutOfRange, keepalive.ErrNotWhole, errors.ErrUnsupported} {
		has := false
		for _, w := range want {
			has = has || w.Is == is
		}
		assert.Equal(t, has, errors.Is(err, is), "errors.Is(err, %v)", is)
	}
}

// TestConfigValidate checks Validate against the platform's answers: each
// field at its least and largest value, one unit past the largest,
// negative, a fraction of its unit and not a whole number of it, a field
// the platform cannot set, every field wrong at once; where Interval and
// Count go together, each is given its partner; where the kernel bounds
// Idle + Interval*Count, the bound.
func TestConfigValidate(t *testing.T) {
	p, w := keepalive.Platform(), wantPlatform(t)
	var sys keepalive.Config
	if w.span != 0 {
		var err error
		sys, err = keepalive.SystemDefaults()
		require.NoError(t, err)
	}
	type row struct {
		name string
		c    keepalive.Config
		want []fieldError
	}
	rows := []row{
		{"zero", keepalive.Config{}, offError(w)},
	}
	var all keepalive.Config
	var allWant []fieldError
	for _, f := range w.fields() {
		s := map[string]keepalive.FieldSupport{"Idle": p.Idle, "Interval": p.Interval, "Count": p.Count, "UserTimeout": p.UserTimeout}[f.name]
		// at sets the field to v, and its partner where the platform
		// wants Interval and Count together.
		at := func(v int64) keepalive.Config { return partner(t, withValue(keepalive.Config{}, f.name, v)) }
		if !s.Settable {
			one := int64(time.Second)
			if f.name == "Count" {
				one = 1
			}
			rows = append(rows, row{f.name + " cannot be set", withValue(keepalive.Config{}, f.name, one), append([]fieldError{unsupportedError(f)}, offError(w)...)})
			all = withValue(all, f.name, -one)
			allWant = append(allWant, unsupportedError(f))
			continue
		}
		u := unitOf(s)
		rows = append(rows,
			row{f.name + " least", at(s.Min * u), offError(w)},
			row{f.name + " largest", at(s.Max * u), append(spanError(w, at(s.Max*u), sys), offError(w)...)},
			row{f.name + " one unit past the largest", at((s.Max + 1) * u), []fieldError{rangeError(s, f.name, (s.Max+1)*u)}},
			row{f.name + " negative", at(-u), []fieldError{rangeError(s, f.name, -u)}},
		)
		if u > 1 {
			rows = append(rows,
				row{f.name + " a fraction of the unit", at(u / 2), []fieldError{rangeError(s, f.name, u/2)}},
				row{f.name + " not a whole number of the unit", at(s.Min*u + u/2), []fieldError{wholeError(s, f.name, s.Min*u+u/2)}},
			)
		}
		all = withValue(all, f.name, -u)
		allWant = append(allWant, rangeError(s, f.name, -u))
	}
	rows = append(rows, row{"every field at once", all, append(allWant, offError(w)...)})
	if p.Off.Settable {
		off := configFor(t, time.Minute, 0, 0, 0)
		off.Off = true
		rows = append(rows, row{"Off with values", off, nil})
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			t.Logf("%v", r.c)
			assertValidation(t, r.want, r.c.Validate())
		})
	}
}

func TestConfigKeepAliveConfig(t *testing.T) {
	tests := []struct {
		name string
		c    keepalive.Config
		want net.KeepAliveConfig
	}{
		{"zero keeps the system values", keepalive.Config{}, net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}},
		{"only Idle", keepalive.Config{Idle: 30 * time.Second}, net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: -1, Count: -1}},
		{"only Interval and Count", keepalive.Config{Interval: 5 * time.Second, Count: 3}, net.KeepAliveConfig{Enable: true, Idle: -1, Interval: 5 * time.Second, Count: 3}},
		{"all set", keepalive.Config{Idle: time.Second, Interval: 32767 * time.Second, Count: 127}, net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: 32767 * time.Second, Count: 127}},
		{"UserTimeout is not carried", keepalive.Config{Idle: 10 * time.Second, UserTimeout: time.Minute}, net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: -1, Count: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.c.KeepAliveConfig())
		})
	}
}

// goConfig returns the Config that has the effect k has in the standard
// library on a new socket: what FromKeepAliveConfig must return where it is
// valid.
func goConfig(k net.KeepAliveConfig) keepalive.Config {
	fix := func(d, def time.Duration) time.Duration {
		switch {
		case d == 0:
			return def
		case d < 0:
			return 0
		}
		return d
	}
	return keepalive.Config{
		Idle:     fix(k.Idle, 15*time.Second),
		Interval: fix(k.Interval, 15*time.Second),
		Count:    int(fix(time.Duration(k.Count), 9)),
		Off:      !k.Enable,
	}
}

// TestFromKeepAliveConfig checks that FromKeepAliveConfig returns the
// Config with the standard library's effect where the platform can apply
// it exactly, and Validate's error for it where not: where Count cannot be
// set, Go's default of 9 probes fails.
func TestFromKeepAliveConfig(t *testing.T) {
	p := keepalive.Platform()
	tests := []struct {
		name string
		k    net.KeepAliveConfig
	}{
		{"zero means Go's defaults", net.KeepAliveConfig{Enable: true}},
		{"negative means the current value", net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -time.Hour, Count: -7}},
		{"explicit values", net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}},
		{"mixed", net.KeepAliveConfig{Enable: true, Idle: 45 * time.Second, Interval: -1}},
		{"Enable false is Off", net.KeepAliveConfig{Idle: 30 * time.Second}},
		{"Enable false, the rest left", net.KeepAliveConfig{Idle: -1, Interval: -1, Count: -1}},
		{"a fraction of a second", net.KeepAliveConfig{Enable: true, Idle: 1500 * time.Millisecond}},
	}
	for _, f := range []struct {
		name string
		s    keepalive.FieldSupport
		k    func(v int64) net.KeepAliveConfig
	}{
		{"Idle", p.Idle, func(v int64) net.KeepAliveConfig { return net.KeepAliveConfig{Enable: true, Idle: time.Duration(v)} }},
		{"Interval", p.Interval, func(v int64) net.KeepAliveConfig {
			return net.KeepAliveConfig{Enable: true, Interval: time.Duration(v)}
		}},
		{"Count", p.Count, func(v int64) net.KeepAliveConfig { return net.KeepAliveConfig{Enable: true, Count: int(v)} }},
	} {
		if !f.s.Settable {
			continue
		}
		u := unitOf(f.s)
		tests = append(tests,
			struct {
				name string
				k    net.KeepAliveConfig
			}{f.name + " least", f.k(f.s.Min * u)},
			struct {
				name string
				k    net.KeepAliveConfig
			}{f.name + " largest", f.k(f.s.Max * u)},
			struct {
				name string
				k    net.KeepAliveConfig
			}{f.name + " past the limit", f.k((f.s.Max + 1) * u)},
		)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := goConfig(tt.k)
			got, err := keepalive.FromKeepAliveConfig(tt.k)
			if verr := want.Validate(); verr != nil {
				assert.EqualError(t, err, verr.Error())
				assert.Zero(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}
	t.Run("Go's default Count", func(t *testing.T) {
		_, err := keepalive.FromKeepAliveConfig(net.KeepAliveConfig{Enable: true})
		if !p.Count.Settable {
			assert.ErrorIs(t, err, errors.ErrUnsupported)
			assert.ErrorContains(t, err, "Count is not supported on ")
		} else {
			assert.NotErrorIs(t, err, errors.ErrUnsupported)
		}
	})
}

// TestKeepAliveConfigRoundTrip checks that the two conversions undo each
// other where the platform can apply the result: a Config survives the
// trip through net.KeepAliveConfig (less UserTimeout), and a
// net.KeepAliveConfig keeps its effect. Where it cannot, the trip fails
// with Validate's error.
func TestKeepAliveConfigRoundTrip(t *testing.T) {
	configs := []keepalive.Config{
		{},
		configFor(t, 30*time.Second, 0, 0, 0),
		configFor(t, 0, 5*time.Second, 3, 0),
		configFor(t, 1, 1, 1, 1),
		configFor(t, math.MaxInt64, math.MaxInt64, math.MaxInt32, 0),
		configFor(t, 30*time.Second, 5*time.Second, 3, 45*time.Second),
		{Off: true},
	}
	for _, c := range configs {
		t.Run("Config "+configName(c), func(t *testing.T) {
			got, err := keepalive.FromKeepAliveConfig(c.KeepAliveConfig())
			want := c
			want.UserTimeout = 0
			if verr := want.Validate(); verr != nil {
				assert.EqualError(t, err, verr.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, want, got)
		})
	}

	kcs := []net.KeepAliveConfig{
		{Enable: true},
		{Enable: true, Idle: -1, Interval: -1, Count: -1},
		{Enable: true, Idle: 20 * time.Second, Interval: -1, Count: 4},
	}
	for _, k := range kcs {
		t.Run(fmt.Sprintf("KeepAliveConfig %+v", k), func(t *testing.T) {
			c, err := keepalive.FromKeepAliveConfig(k)
			if verr := goConfig(k).Validate(); verr != nil {
				assert.EqualError(t, err, verr.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, goEffect(k), goEffect(c.KeepAliveConfig()))
		})
	}
}

// goEffect returns what the standard library does with k: zero is Go's
// default, negative leaves the value (-1).
func goEffect(k net.KeepAliveConfig) net.KeepAliveConfig {
	fix := func(d, def time.Duration) time.Duration {
		switch {
		case d == 0:
			return def
		case d < 0:
			return -1
		}
		return d
	}
	k.Idle = fix(k.Idle, 15*time.Second)
	k.Interval = fix(k.Interval, 15*time.Second)
	k.Count = int(fix(time.Duration(k.Count), 9))
	return k
}

// TestConfigDetectionTime checks DetectionTime against Idle +
// Interval*Count, and where a user timeout ends idle probing (Linux)
// against the first probe timer that finds it passed.
func TestConfigDetectionTime(t *testing.T) {
	linuxDefaults := keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}
	rule := wantPlatform(t).userTimeoutEndsProbes
	tests := []struct {
		name string
		c    keepalive.Config
		sys  keepalive.Config
		want time.Duration // where a user timeout ends idle probing
	}{
		{"zero takes the system values", keepalive.Config{}, linuxDefaults, 7200*time.Second + 9*75*time.Second},
		{"only Idle", keepalive.Config{Idle: 60 * time.Second}, linuxDefaults, 60*time.Second + 9*75*time.Second},
		{"only Interval and Count", keepalive.Config{Interval: 10 * time.Second, Count: 3}, linuxDefaults, 7230 * time.Second},
		{"all set", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}, linuxDefaults, 110 * time.Second},
		{"Count 1", keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1}, linuxDefaults, 2 * time.Second},
		{"limits", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}, linuxDefaults, 128 * 32767 * time.Second},
		{"other system values", keepalive.Config{Idle: 30 * time.Second}, keepalive.Config{Idle: time.Hour, Interval: 20 * time.Second, Count: 4}, 110 * time.Second},

		// Where a user timeout ends idle probing the connection dies at
		// the first probe timer, Idle + Interval*k with k >= 1, that
		// finds UserTimeout passed; Count no longer matters. Elsewhere
		// these are Idle + Interval*Count.
		{"UserTimeout on a probe", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 100 * time.Second}, linuxDefaults, 100 * time.Second},
		{"UserTimeout between probes", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 95 * time.Second}, linuxDefaults, 100 * time.Second},
		{"UserTimeout just past a probe", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 70*time.Second + time.Millisecond}, linuxDefaults, 80 * time.Second},
		{"UserTimeout at the first probe's answer", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 70 * time.Second}, linuxDefaults, 70 * time.Second},
		{"UserTimeout below Idle needs one probe", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: time.Second}, linuxDefaults, 70 * time.Second},
		{"UserTimeout beyond Count", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 2, UserTimeout: 300 * time.Second}, linuxDefaults, 300 * time.Second},
		{"UserTimeout with system values", keepalive.Config{UserTimeout: 3 * time.Hour}, linuxDefaults, 7200*time.Second + 48*75*time.Second},
		{"UserTimeout with system values between probes", keepalive.Config{UserTimeout: 3*time.Hour + time.Second}, linuxDefaults, 7200*time.Second + 49*75*time.Second},
		{"UserTimeout from sys", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}, keepalive.Config{UserTimeout: 85 * time.Second}, 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if f := tt.c.WithDefaults(tt.sys); !rule {
				want = f.Idle + f.Interval*time.Duration(f.Count)
			}
			assert.Equal(t, want, detectionTime(t, tt.c, tt.sys))
		})
	}
	t.Run("Off", func(t *testing.T) {
		dt, err := keepalive.Config{Off: true, Idle: time.Minute}.DetectionTime()
		require.NoError(t, err)
		assert.Equal(t, time.Duration(math.MaxInt64), dt)
	})
}

// TestConfigDetectionTimeDefaults checks the natural call: DetectionTime of
// a Config with zero fields takes them at this system's values, read with
// SystemDefaults, and fails where those cannot be read; a Config that sets
// every field needs no defaults.
func TestConfigDetectionTimeDefaults(t *testing.T) {
	sys, sysErr := keepalive.SystemDefaults()
	for _, c := range []keepalive.Config{
		{},
		{Idle: 31 * time.Second},
		{Interval: 7 * time.Second, Count: 4},
		{UserTimeout: 40 * time.Second},
	} {
		t.Run(configName(c), func(t *testing.T) {
			dt, err := c.DetectionTime()
			if !wantPlatform(t).DefaultsReadable {
				assert.ErrorIs(t, err, errors.ErrUnsupported)
				assert.Equal(t, sysErr, err, "the error of SystemDefaults")
				assert.Zero(t, dt)
				return
			}
			require.NoError(t, err)
			require.NoError(t, sysErr)
			assert.Equal(t, detectionTime(t, c, sys), dt, "with the zero fields at %+v", sys)
		})
	}
	t.Run("every field set", func(t *testing.T) {
		c := keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}
		dt, err := c.DetectionTime()
		require.NoError(t, err, "no system defaults needed")
		assert.Equal(t, 45*time.Second, dt)
	})
}

// TestConfigWithDefaults checks that WithDefaults fills each zero field
// from sys, and no other.
func TestConfigWithDefaults(t *testing.T) {
	sys := keepalive.Config{Idle: time.Hour, Interval: time.Minute, Count: 7, UserTimeout: time.Second, Off: true}
	for _, tt := range []struct {
		c, want keepalive.Config
	}{
		{keepalive.Config{}, keepalive.Config{Idle: time.Hour, Interval: time.Minute, Count: 7, UserTimeout: time.Second}},
		{keepalive.Config{Idle: 5 * time.Second, Count: 2, Off: true}, keepalive.Config{Idle: 5 * time.Second, Interval: time.Minute, Count: 2, UserTimeout: time.Second, Off: true}},
		{keepalive.Config{Interval: 3 * time.Second, UserTimeout: 9 * time.Second}, keepalive.Config{Idle: time.Hour, Interval: 3 * time.Second, Count: 7, UserTimeout: 9 * time.Second}},
	} {
		assert.Equal(t, tt.want, tt.c.WithDefaults(sys), "%v", tt.c)
	}
}

// TestConfigWithUserTimeout checks that WithUserTimeout sets Idle +
// Interval*Count, and that the result notices an idle connection's dead
// peer when the Config without it does, under the platform's rule; where
// the sum exceeds the platform's limit, Validate says so.
func TestConfigWithUserTimeout(t *testing.T) {
	ut := wantPlatform(t).UserTimeout
	sys, sysErr := keepalive.SystemDefaults()
	tests := []struct {
		name string
		c    keepalive.Config
		// want is the UserTimeout of a Config that sets Idle, Interval
		// and Count; zero where c takes some at the system's values.
		want  time.Duration
		large bool // the result's UserTimeout is past Linux's limit
	}{
		{"zero", keepalive.Config{}, 0, false},
		{"all set", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}, 110 * time.Second, false},
		{"partial keeps zero fields zero", keepalive.Config{Idle: 60 * time.Second}, 0, false},
		{"Count 1", keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1}, 2 * time.Second, false},
		{"replaces a UserTimeout", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: time.Second}, 110 * time.Second, false},
		{"limits overflow UserTimeout", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}, 128 * 32767 * time.Second, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.WithUserTimeout()
			want := tt.c
			want.UserTimeout = tt.want
			if tt.want == 0 {
				// The zero fields count at the system's values.
				if !wantPlatform(t).DefaultsReadable {
					assert.ErrorIs(t, err, errors.ErrUnsupported)
					assert.Equal(t, sysErr, err, "the error of SystemDefaults")
					return
				}
				f := tt.c.WithDefaults(sys)
				want.UserTimeout = f.Idle + f.Interval*time.Duration(f.Count)
			}
			require.NoError(t, err)
			assert.Equal(t, want, got)
			if tt.large {
				// Validate refuses the UserTimeout where it passes the
				// platform's limit, or where there is none.
				var ve *keepalive.ValidationError
				var fe *keepalive.FieldError
				if errors.As(got.Validate(), &ve) {
					for _, e := range ve.Errors {
						if e.Field == "UserTimeout" {
							fe = e
						}
					}
				}
				switch {
				case !ut.Settable:
					require.NotNil(t, fe)
					assert.Equal(t, unsupportedError(namedField{"UserTimeout", ut}), wantOf(fe))
				case got.UserTimeout > time.Duration(ut.Max)*ut.Unit:
					require.NotNil(t, fe)
					assert.Equal(t, rangeError(ut.FieldSupport, "UserTimeout", int64(got.UserTimeout)), wantOf(fe))
				default:
					assert.Nil(t, fe, "a UserTimeout within the limit")
				}
				return
			}
			// The pairing changes nothing for an idle connection: it is
			// declared dead when it would have been without a UserTimeout.
			without := tt.c
			without.UserTimeout = 0
			assert.Equal(t, detectionTime(t, without, sys), detectionTime(t, got, sys))
		})
	}
}

// TestNotTCP checks that Set, Get and Disable refuse what is not a TCP
// socket, and that Set reports an invalid Config first.
func TestNotTCP(t *testing.T) {
	// A Config that is valid wherever one is.
	c := keepalive.Config{}
	p1, p2 := net.Pipe()
	t.Cleanup(func() { p1.Close() })
	t.Cleanup(func() { p2.Close() })
	tests := []struct {
		name string
		conn any
		want string
	}{
		{"net.Pipe", p1, "keepalive: not a TCP socket: *net.pipe"},
		{"wrapping net.Pipe", netConner{p2}, "keepalive: not a TCP socket: *net.pipe inside keepalive_test.netConner"},
		{"wrapping nil", netConner{}, "keepalive: not a TCP socket: nil inside keepalive_test.netConner"},
		{"nil", nil, "keepalive: not a TCP socket: nil"},

		// A typed nil is no socket either: the standard library's methods
		// would panic on it.
		{"nil *net.TCPConn", (*net.TCPConn)(nil), "keepalive: not a TCP socket: nil *net.TCPConn"},
		{"nil *net.TCPListener", (*net.TCPListener)(nil), "keepalive: not a TCP socket: nil *net.TCPListener"},
		{"nil *net.UDPConn", (*net.UDPConn)(nil), "keepalive: not a TCP socket: nil *net.UDPConn"},
		{"nil *tls.Conn", (*tls.Conn)(nil), "keepalive: not a TCP socket: nil *tls.Conn"},
		{"nil *os.File", (*os.File)(nil), "keepalive: not a TCP socket: nil *os.File"},
		{"wrapping a nil *net.TCPConn", netConner{(*net.TCPConn)(nil)}, "keepalive: not a TCP socket: nil *net.TCPConn inside keepalive_test.netConner"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := keepalive.Set(tt.conn, c)
			if verr := c.Validate(); verr != nil {
				// Plan 9, js and wasip1 refuse every Config.
				assert.Equal(t, verr, err)
			} else {
				assert.ErrorIs(t, err, keepalive.ErrNotTCP)
				assert.EqualError(t, err, tt.want)
			}

			_, err = keepalive.Get(tt.conn)
			assert.ErrorIs(t, err, keepalive.ErrNotTCP)
			assert.EqualError(t, err, tt.want)

			err = keepalive.Disable(tt.conn)
			assert.ErrorIs(t, err, keepalive.ErrNotTCP)
			assert.EqualError(t, err, tt.want)

			// An invalid Config is reported first, whatever the conn.
			bad := keepalive.Config{Idle: -time.Second}
			assert.Equal(t, bad.Validate(), keepalive.Set(tt.conn, bad))
		})
	}
}

// rawConn is a syscall.RawConn that counts its uses and never calls f.
type rawConn struct{ calls int }

func (rc *rawConn) Control(func(fd uintptr)) error    { rc.calls++; return nil }
func (rc *rawConn) Read(func(fd uintptr) bool) error  { rc.calls++; return nil }
func (rc *rawConn) Write(func(fd uintptr) bool) error { rc.calls++; return nil }

var _ syscall.RawConn = (*rawConn)(nil)

// TestConfigControlUntouched checks that Control leaves the socket alone
// for other networks and for an invalid Config.
func TestConfigControlUntouched(t *testing.T) {
	good := fullConfig(t)
	for _, network := range []string{"udp", "udp4", "udp6", "unix", "unixgram", "unixpacket", "ip4:icmp", "TCP", "tcp7", ""} {
		t.Run(network, func(t *testing.T) {
			rc := &rawConn{}
			assert.NoError(t, good.Control(network, "127.0.0.1:1", rc))
			assert.Zero(t, rc.calls, "RawConn used")
			assert.NoError(t, keepalive.Config{Count: -1}.Control(network, "127.0.0.1:1", rc), "a Config that is not used is not validated")
		})
	}
	// Invalid on every platform: negative, or not a whole number of any
	// platform's unit.
	bad := []keepalive.Config{
		{Idle: -time.Second},
		{Interval: time.Second + time.Nanosecond},
		{Count: -1},
		{UserTimeout: -time.Millisecond},
	}
	for _, network := range []string{"tcp", "tcp4", "tcp6"} {
		for _, c := range bad {
			t.Run(network+" "+configName(c), func(t *testing.T) {
				rc := &rawConn{}
				assert.Equal(t, c.Validate(), c.Control(network, "127.0.0.1:1", rc))
				assert.Zero(t, rc.calls, "RawConn used")
			})
		}
	}
}

// TestCheckSpan checks the rule that macOS, FreeBSD, NetBSD and DragonFly
// apply in Validate: Idle + Interval*Count, each zero field taken from the
// system defaults, must stay within the counter the kernel adds them in.
// The defaults are read only when the sum could exceed the limit with
// defaults within Linux's limits.
func TestCheckSpan(t *testing.T) {
	const darwinMax = math.MaxUint32 * time.Millisecond // 2^32-1 ms
	const netbsdMax = 42949672 * 500 * time.Millisecond // INT_MAX/50 slow ticks
	bsdDefaults := keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 8}
	tests := []struct {
		name    string
		c       keepalive.Config
		max     time.Duration
		sys     keepalive.Config // what the defaults read, when read
		sysErr  error
		wantSys bool   // the defaults must be read
		want    string // the error text, empty for none
	}{
		{name: "zero", max: darwinMax},
		{name: "Linux's limits", c: keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}, max: darwinMax},
		{name: "one field, small", c: keepalive.Config{Idle: 60 * time.Second}, max: darwinMax},
		{name: "at the limit", c: keepalive.Config{Idle: 3294967295 * time.Millisecond, Interval: 1000000 * time.Second, Count: 1}, max: darwinMax},
		{name: "a nanosecond past the limit", c: keepalive.Config{Idle: 3294967295*time.Millisecond + 1, Interval: 1000000 * time.Second, Count: 1}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 4294967.295000001s is out of range 0s..4294967.295s"},
		{name: "whole seconds at the limit", c: keepalive.Config{Idle: 1294967 * time.Second, Interval: 1000000 * time.Second, Count: 3}, max: darwinMax},
		{name: "a second past the limit", c: keepalive.Config{Idle: 1294968 * time.Second, Interval: 1000000 * time.Second, Count: 3}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 4294968s is out of range 0s..4294967.295s"},
		{name: "large Count", c: keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1 << 30}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 1073741825s is out of range 0s..4294967.295s"},
		{name: "overflows a Duration", c: keepalive.Config{Idle: 2147483 * time.Second, Interval: 2147483 * time.Second, Count: math.MaxInt32}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 2147483s+2147483s*2147483647 is out of range 0s..4294967.295s"},
		{name: "large Count, zero Interval, small default", c: keepalive.Config{Count: 50000}, max: darwinMax, sys: bsdDefaults, wantSys: true},
		{name: "large Count, zero Interval, large default", c: keepalive.Config{Count: 50000}, max: darwinMax, sys: keepalive.Config{Interval: 100 * time.Second}, wantSys: true,
			want: "keepalive: Idle+Interval*Count 5000000s is out of range 0s..4294967.295s"},
		{name: "large Interval, zero Count and Idle", c: keepalive.Config{Interval: 500000 * time.Second}, max: darwinMax, sys: bsdDefaults, wantSys: true},
		{name: "larger Interval, zero Count and Idle", c: keepalive.Config{Interval: 600000 * time.Second}, max: darwinMax, sys: bsdDefaults, wantSys: true,
			want: "keepalive: Idle+Interval*Count 4807200s is out of range 0s..4294967.295s"},
		{name: "defaults unreadable", c: keepalive.Config{Count: 1 << 30}, max: darwinMax, sysErr: errors.New("no sysctl"), wantSys: true},
		{name: "half seconds", c: keepalive.Config{Idle: 1474836*time.Second + 500*time.Millisecond, Interval: time.Second, Count: 1 << 24}, max: netbsdMax},
		{name: "half seconds past the limit", c: keepalive.Config{Idle: 4697620*time.Second + 500*time.Millisecond, Interval: time.Second, Count: 1 << 24}, max: netbsdMax,
			want: "keepalive: Idle+Interval*Count 21474836.5s is out of range 0s..21474836s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := false
			sys := func() (keepalive.Config, error) {
				read = true
				return tt.sys, tt.sysErr
			}
			err := keepalive.CheckSpan(tt.c, tt.max, sys)
			assert.Equal(t, tt.wantSys, read, "defaults read")
			if tt.want == "" {
				assert.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			assert.EqualError(t, err, tt.want)
			assert.ErrorIs(t, err, keepalive.ErrOutOfRange)
			assert.Equal(t, "Idle+Interval*Count", err.Field)
		})
	}
}
