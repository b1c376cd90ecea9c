package keepalive_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// The helpers of every test, on every platform. Those of the tests that
// make connections are in helpers_socket_test.go, and each platform's own
// pieces in helpers_GOOS_test.go: hostFacts there finds out what
// platform_test.go's table needs to know about the running system.

// configName names c in subtest names.
func configName(c keepalive.Config) string {
	if c == (keepalive.Config{}) {
		return "zero"
	}
	s := ""
	add := func(name string, v any) {
		if s != "" {
			s += ","
		}
		s += name + "=" + fmt.Sprint(v)
	}
	if c.Idle != 0 {
		add("Idle", c.Idle)
	}
	if c.Interval != 0 {
		add("Interval", c.Interval)
	}
	if c.Count != 0 {
		add("Count", c.Count)
	}
	if c.UserTimeout != 0 {
		add("UserTimeout", c.UserTimeout)
	}
	if c.Off {
		add("Off", true)
	}
	return s
}

// detectionTime is the DetectionTime of c with each zero field at sys's
// value, which must not fail.
func detectionTime(t testing.TB, c, sys keepalive.Config) time.Duration {
	t.Helper()
	d, err := c.WithDefaults(sys).DetectionTime()
	require.NoError(t, err, "DetectionTime of %v", c)
	return d
}

// netConner wraps a connection the way *tls.Conn does.
type netConner struct{ net.Conn }

func (c netConner) NetConn() net.Conn { return c.Conn }

// fit returns v, a duration, rounded down to a whole number of f's units
// and within its range.
func fit(f keepalive.FieldSupport, v time.Duration) time.Duration {
	v -= v % f.Unit
	return min(max(v, time.Duration(f.Min)*f.Unit), time.Duration(f.Max)*f.Unit)
}

// fitCount returns n within f's range.
func fitCount(f keepalive.FieldSupport, n int) int {
	return int(min(max(int64(n), f.Min), f.Max))
}

// configFor returns the Config with the given values, less the fields the
// platform cannot set, each fitted to the platform's range; where the
// platform wants Interval and Count together, one set alone brings the
// other at its least.
func configFor(t testing.TB, idle, interval time.Duration, count int, userTimeout time.Duration) keepalive.Config {
	t.Helper()
	p := keepalive.Platform()
	var c keepalive.Config
	if p.Idle.Settable && idle != 0 {
		c.Idle = fit(p.Idle, idle)
	}
	if p.Interval.Settable && interval != 0 {
		c.Interval = fit(p.Interval, interval)
	}
	if p.Count.Settable && count != 0 {
		c.Count = fitCount(p.Count, count)
	}
	if p.UserTimeout.Settable && userTimeout != 0 {
		c.UserTimeout = fit(p.UserTimeout, userTimeout)
	}
	return partner(t, c)
}

// partner sets the other of Interval and Count, at its least, where the
// platform wants them together and c sets one.
func partner(t testing.TB, c keepalive.Config) keepalive.Config {
	t.Helper()
	if !wantPlatform(t).pair {
		return c
	}
	p := keepalive.Platform()
	if c.Interval != 0 && c.Count == 0 {
		c.Count = int(p.Count.Min)
	}
	if c.Count != 0 && c.Interval == 0 {
		c.Interval = time.Duration(p.Interval.Min) * p.Interval.Unit
	}
	return c
}

// fullConfig returns a Config with every field the platform sets: on Linux
// idle 31s, interval 7s, count 4, user timeout 40s.
func fullConfig(t testing.TB) keepalive.Config {
	t.Helper()
	return configFor(t, 31*time.Second, 7*time.Second, 4, 40*time.Second)
}
