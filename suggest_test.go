package keepalive_test

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// suggestMargin is the time Suggest keeps between the second probe and the idle
// timeout: a tenth of it, at least 1s.
func suggestMargin(idleTimeout time.Duration) time.Duration {
	return max(idleTimeout/10, time.Second)
}

// suggestedProblem returns what is wrong with c as a result of
// Suggest(idleTimeout, detect), or "": it must be valid, with every field
// set, UserTimeout Idle + Interval*Count, the path kept open even if the
// first probe is lost, and a vanished peer noticed within detect whatever
// the system defaults.
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
	if want := c.Idle + c.Interval*time.Duration(c.Count); c.UserTimeout != want {
		return fmt.Sprintf("UserTimeout is %v; want Idle + Interval*Count = %v", c.UserTimeout, want)
	}
	for _, sys := range []keepalive.Config{
		{},
		{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9},
		{UserTimeout: time.Hour},
	} {
		if dt := c.DetectionTime(sys); dt > detect {
			return fmt.Sprintf("DetectionTime with system %+v is %v, over %v", sys, dt, detect)
		}
	}
	return ""
}

func TestSuggest(t *testing.T) {
	needUserTimeout(t)
	const (
		awsNLB      = 350 * time.Second
		azureLB     = 4 * time.Minute
		gcpCloudNAT = 20 * time.Minute
	)
	for _, tt := range []struct {
		name        string
		idleTimeout time.Duration
		detect      time.Duration
		want        string // the exact Config, when not empty
	}{
		{"AWS NLB, 30s", awsNLB, 30 * time.Second, "idle=15s,interval=5s,count=3,user-timeout=30s"},
		{"AWS NLB, 2m", awsNLB, 2 * time.Minute, "idle=60s,interval=20s,count=3,user-timeout=120s"},
		{"AWS NLB, 5m", awsNLB, 5 * time.Minute, "idle=150s,interval=50s,count=3,user-timeout=300s"},
		// The idle timeout, not the target, bounds Idle: Idle + Interval is
		// 350s less 35s, with Interval a quarter of it.
		{"AWS NLB, 10m", awsNLB, 10 * time.Minute, "idle=237s,interval=78s,count=3,user-timeout=471s"},
		{"AWS NLB, 1h", awsNLB, time.Hour, "idle=237s,interval=78s,count=3,user-timeout=471s"},
		{"AWS NLB, 5s", awsNLB, 5 * time.Second, "idle=2s,interval=1s,count=3,user-timeout=5s"},
		{"AWS NLB, 2s", awsNLB, 2 * time.Second, "idle=1s,interval=1s,count=1,user-timeout=2s"},
		{"Azure LB, 10s", azureLB, 10 * time.Second, "idle=5s,interval=1s,count=3,user-timeout=8s"},
		{"Azure LB, 1m", azureLB, time.Minute, "idle=30s,interval=10s,count=3,user-timeout=60s"},
		{"Azure LB, 4m", azureLB, 4 * time.Minute, "idle=120s,interval=40s,count=3,user-timeout=240s"},
		{"Azure LB, 15m", azureLB, 15 * time.Minute, "idle=162s,interval=54s,count=3,user-timeout=324s"},
		{"GCP Cloud NAT, 30s", gcpCloudNAT, 30 * time.Second, "idle=15s,interval=5s,count=3,user-timeout=30s"},
		{"GCP Cloud NAT, 15m", gcpCloudNAT, 15 * time.Minute, "idle=450s,interval=150s,count=3,user-timeout=900s"},
		{"GCP Cloud NAT, 1h", gcpCloudNAT, time.Hour, "idle=810s,interval=270s,count=3,user-timeout=1620s"},
		// Fractions of a second are rounded down.
		{"GCP Cloud NAT, 61.9s", gcpCloudNAT, 61900 * time.Millisecond, "idle=30s,interval=10s,count=3,user-timeout=60s"},
		{"shortest idle timeout", 3 * time.Second, time.Minute, "idle=1s,interval=1s,count=3,user-timeout=4s"},
		{"kernel limits", math.MaxInt64, math.MaxInt64, "idle=32767s,interval=32767s,count=3,user-timeout=131068s"},
		{"AWS NLB, 17s", awsNLB, 17 * time.Second, ""},
		{"Azure LB, 4m1s", azureLB, 241 * time.Second, ""},
		{"GCP Cloud NAT, 20m", gcpCloudNAT, gcpCloudNAT, ""},
		{"GCP Cloud NAT, 1d", gcpCloudNAT, 24 * time.Hour, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := keepalive.Suggest(tt.idleTimeout, tt.detect)
			require.NoError(t, err)
			assert.Empty(t, suggestedProblem(c, tt.idleTimeout, tt.detect))
			if tt.want != "" {
				assert.Equal(t, tt.want, c.String())
			}
		})
	}
}

// TestSuggestGrid checks Suggest's promises over a grid of idle timeouts
// and detection targets, whole seconds and not, so that no rounding or
// branch breaks them.
func TestSuggestGrid(t *testing.T) {
	needUserTimeout(t)
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
				if err != nil {
					t.Fatalf("Suggest(%v, %v): %v", it+frac, d+frac, err)
				}
				if p := suggestedProblem(c, it+frac, d+frac); p != "" {
					t.Fatalf("Suggest(%v, %v) = %v: %s", it+frac, d+frac, c, p)
				}
			}
		}
	}
	t.Logf("checked %d pairs of idle timeout and detection target", n)
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
