package keepalive_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keepalive-go/keepalive"
)

// suggestMargin is the time Suggest keeps between the second probe and the idle
// timeout: a tenth of it, at least 1s.
func suggestMargin(idleTimeout time.Duration) time.Duration {
	return max(idleTimeout/10, time.Second)
}

// suggestedProblem returns what is wrong with c as a result of
// Suggest(idleTimeout, detect), or "": it must be valid, with every field
// set, UserTimeout Idle + Interval*Count where the platform has one, the
// path kept open even if the first probe is lost, and a vanished peer
// noticed within detect whatever the system defaults.
func suggestedProblem(c keepalive.Config, idleTimeout, detect time.Duration) string {
	if err := c.Validate(); err != nil {
		return err.Error()
	}
	if c.Idle <= 0 || c.Interval <= 0 || c.Count <= 0 {
		return "a field is left to the system default"
	}
	if c.Idle >= idleTimeout {
		return fmt.Sprintf("Idle %v is not below the idle timeout %v", c.Idle, idleTimeout)
	}
	if second, latest := c.Idle+c.Interval, idleTimeout-suggestMargin(idleTimeout); second > latest {
		return fmt.Sprintf("the second probe, at %v, is after %v (the idle timeout less the margin)", second, latest)
	}
	want := c.Idle + c.Interval*time.Duration(c.Count)
	if !keepalive.Platform().UserTimeout.Settable {
		want = 0 // the platform has none
	}
	if c.UserTimeout != want {
		return fmt.Sprintf("UserTimeout is %v; want %v (Idle + Interval*Count where the platform has a user timeout)", c.UserTimeout, want)
	}
	for _, sys := range []keepalive.Config{
		{},
		{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9},
		{UserTimeout: time.Hour},
	} {
		dt, err := c.WithDefaults(sys).DetectionTime()
		if err != nil {
			return fmt.Sprintf("DetectionTime with system %+v: %v", sys, err)
		}
		if dt > detect {
			return fmt.Sprintf("DetectionTime with system %+v is %v, over %v", sys, dt, detect)
		}
	}
	return ""
}

// TestSuggestGrid checks Suggest's promises over a grid of idle timeouts
// and detection targets, whole seconds and not, so that no rounding or
// branch breaks them. Where the platform cannot set what Suggest chooses
// (Idle 1s to 2000s, Interval 1s to 667s, Count 1 to 3, a user timeout up
// to 4000s), Suggest fails with Validate's error instead; where it can,
// Suggest never fails.
func TestSuggestGrid(t *testing.T) {
	p := keepalive.Platform()
	seconds := func(s keepalive.FieldSupport, n int64) time.Duration { return time.Duration(n) * s.Unit }
	fits := p.Idle.Settable && p.Interval.Settable && p.Count.Settable &&
		seconds(p.Idle, p.Idle.Min) <= time.Second && seconds(p.Idle, p.Idle.Max) >= 2000*time.Second &&
		seconds(p.Interval, p.Interval.Min) <= time.Second && seconds(p.Interval, p.Interval.Max) >= 667*time.Second &&
		p.Count.Min <= 1 && p.Count.Max >= 3 &&
		(!p.UserTimeout.Settable || seconds(p.UserTimeout, p.UserTimeout.Min) <= time.Second && seconds(p.UserTimeout, p.UserTimeout.Max) >= 4000*time.Second)
	var failed int
	var idleTimeouts, detects []time.Duration
	for s := 3; s <= 1300; s += 1 + s/60*6 {
		idleTimeouts = append(idleTimeouts, time.Duration(s)*time.Second)
	}
	for s := 2; s <= 4000; s += 1 + s/120*12 {
		detects = append(detects, time.Duration(s)*time.Second)
	}
	var n int
	for _, it := range idleTimeouts {
		for _, d := range detects {
			for _, frac := range []time.Duration{0, time.Nanosecond, 999 * time.Millisecond} {
				n++
				c, err := keepalive.Suggest(it+frac, d+frac)
				var ve *keepalive.ValidationError
				if err != nil && !fits && errors.As(err, &ve) {
					failed++
					continue
				}
				if err != nil {
					t.Fatalf("Suggest(%v, %v): %v", it+frac, d+frac, err)
				}
				if p := suggestedProblem(c, it+frac, d+frac); p != "" {
					t.Fatalf("Suggest(%v, %v) = %v: %s", it+frac, d+frac, c, p)
				}
			}
		}
	}
	t.Logf("checked %d pairs of idle timeout and detection target; the platform cannot set what Suggest chose for %d", n, failed)
}

func TestSuggestErrors(t *testing.T) {
	for _, tt := range []struct {
		name                string
		idleTimeout, detect time.Duration
		want                string
	}{
		{"detect under 2s", 350 * time.Second, 1999 * time.Millisecond, "keepalive: cannot notice a dead peer within 1.999s: the shortest Config (idle 1s, interval 1s, count 1) takes 2s"},
		{"detect zero", 350 * time.Second, 0, "keepalive: cannot notice a dead peer within 0s: the shortest Config (idle 1s, interval 1s, count 1) takes 2s"},
		{"detect negative", 350 * time.Second, -time.Minute, "keepalive: cannot notice a dead peer within -1m0s: the shortest Config (idle 1s, interval 1s, count 1) takes 2s"},
		{"idle timeout under 3s", 2999 * time.Millisecond, time.Minute, "keepalive: idle timeout 2.999s is too short: the first probe and the one after it, at least 1s apart, must both come 1s or more before it"},
		{"idle timeout zero", 0, time.Minute, "keepalive: idle timeout 0s is too short: the first probe and the one after it, at least 1s apart, must both come 1s or more before it"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := keepalive.Suggest(tt.idleTimeout, tt.detect)
			assert.EqualError(t, err, tt.want)
			assert.Equal(t, keepalive.Config{}, c)
		})
	}
}
