package keepalive

import (
	"fmt"
	"time"
)

// suggestCount is the Count Suggest chooses when the detection target
// leaves room for it: one or two lost probes do not close a healthy
// connection.
const suggestCount = 3

// suggestMaxDetect is the longest detection time Suggest plans for: below
// the largest Idle + Interval*Count and user timeout every platform holds
// (about 24.8 days, 2^31 milliseconds, on macOS and FreeBSD).
const suggestMaxDetect = 24 * 24 * time.Hour

// Suggest returns a Config for a path whose middleboxes (firewalls, NATs,
// load balancers) forget a flow after idleTimeout of silence, and on which a
// peer that has vanished must be noticed within detect. For example AWS NLB
// forgets a flow after 350s, Azure Load Balancer after 4 minutes by default,
// GCP Cloud NAT after 20 minutes.
//
// The Config meets both:
//
//   - The path stays open even if the first probe is lost: Idle + Interval
//     is at most idleTimeout less a margin of a tenth of it (at least 1s),
//     which covers the delay between the last packet the middlebox saw and
//     the one this host received, the time a probe takes to reach the
//     middlebox, and middleboxes that expire flows a little early.
//   - A vanished peer is noticed within detect: [Config.DetectionTime] is at
//     most detect, whatever the system defaults, since every field is set.
//
// Within those bounds Suggest spends half of detect on Idle and the other
// half on Count = 3 probes (fewer when detect is under 6s), so that a probe
// or two may be lost; when that Idle would come too close to idleTimeout,
// Idle and Interval are lowered to fit, with Interval a quarter of the
// time the path allows, and the Config then notices a dead peer sooner than
// detect. Values are whole seconds, rounded down.
//
// UserTimeout is Idle + Interval*Count, where the platform has a user
// timeout. Without one, a peer that vanishes while data is in flight is
// noticed only after the system's retransmission limit (about 15 minutes on
// Linux), however short detect is: keepalive probes are not sent while data
// waits to be acknowledged. The cost is that a peer which stops reading for
// longer than the user timeout, though alive, is cut off too. A caller whose
// peers may pause for longer (a consumer applying back-pressure, a
// subscriber stalled for a checkpoint) sets UserTimeout in the result to
// zero, or to the longest pause, and keeps the rest.
//
// Suggest fails when detect is under 2s (the shortest Config, idle 1s,
// interval 1s, count 1, takes 2s), when idleTimeout is under 3s (two probes
// a second apart must fit within the idle timeout less its margin), or when
// the platform cannot set the values; any idleTimeout and detect past those
// bounds can both be met. A detect beyond 24 days is planned as 24 days: the
// Config then notices a dead peer sooner, within every platform's limits.
func Suggest(idleTimeout, detect time.Duration) (Config, error) {
	if detect < 2*time.Second {
		return Config{}, fmt.Errorf("keepalive: cannot notice a dead peer within %v: the shortest Config (idle 1s, interval 1s, count 1) takes 2s", detect)
	}
	if idleTimeout < 3*time.Second {
		return Config{}, fmt.Errorf("keepalive: idle timeout %v is too short: the first probe and the one after it, at least 1s apart, must both come 1s or more before it", idleTimeout)
	}
	// A Config that notices sooner than detect meets it too: past
	// suggestMaxDetect, where the kernels' counters of the sum and of the
	// user timeout end, take that instead.
	d := int64(min(detect, suggestMaxDetect) / time.Second)
	// latest is the latest time, in seconds of silence, at which the second
	// probe may go out: the idle timeout less the margin.
	latest := int64((idleTimeout - max(idleTimeout/10, time.Second)) / time.Second)

	idle := d / 2
	count := min(int64(suggestCount), d-idle)
	interval := (d - idle) / count
	if idle+interval > latest {
		interval = max(latest/4, 1)
		idle = latest - interval
		count = min(int64(suggestCount), (d-idle)/interval)
	}
	idle = min(idle, maxSeconds(optIdle))
	interval = min(interval, maxSeconds(optInterval))

	c := Config{
		Idle:     time.Duration(idle) * time.Second,
		Interval: time.Duration(interval) * time.Second,
		Count:    int(count),
	}
	if support(optUserTimeout).Settable {
		c.UserTimeout = c.Idle + c.Interval*time.Duration(c.Count)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// maxSeconds returns the largest whole number of seconds the platform takes
// for option o.
func maxSeconds(o option) int64 {
	s := support(o)
	return int64(time.Duration(s.Max) * s.Unit / time.Second)
}
