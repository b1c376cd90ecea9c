package keepalive

import (
	"fmt"
	"math"
	"time"
)

// The model of Interval and Count on illumos and Oracle Solaris, which
// sockopt_solaris.go applies. It has no build constraint so that its
// arithmetic compiles, and its tests (abortthreshold_test.go) run, on every
// platform, Linux included.
//
// illumos and Oracle Solaris keep no probe count of their own. An idle
// connection whose probes go unanswered is dropped once its keepalive abort
// threshold (TCP_KEEPALIVE_ABORT_THRESHOLD, in milliseconds) has passed
// after Idle. Setting both TCP_KEEPINTVL and TCP_KEEPCNT sets the threshold
// to their product; setting one alone derives the other from the threshold;
// a socket that sets neither sends probes at backed-off times (the
// retransmission timeout, doubling up to its maximum) until the threshold
// has passed. A Config expresses the first state, with Interval and Count,
// and the last, with both zero: the functions here keep to those two, so
// that Get returns what Set applied and never a state no Config expresses.

// maxAbortThreshold is the largest keepalive abort threshold that getsockopt
// reports as it is: the option is an int of milliseconds.
const maxAbortThreshold = math.MaxInt32 * time.Millisecond

// checkThresholdPair returns the error for a Config that sets one of
// Interval and Count without the other, or whose Interval*Count passes
// maxAbortThreshold, on a system that keeps a keepalive abort threshold.
// Interval and Count are known to be valid on their own.
func checkThresholdPair(c Config) *FieldError {
	switch {
	case c.Interval == 0 && c.Count == 0:
		return nil
	case c.Interval == 0:
		return pairError(optInterval, optCount, c)
	case c.Count == 0:
		return pairError(optCount, optInterval, c)
	}
	limit := maxAbortThreshold / c.Interval
	if int64(c.Count) <= int64(limit) {
		return nil
	}
	return &FieldError{
		Field: optionField[optCount],
		Value: int64(c.Count),
		Min:   1,
		Max:   int64(limit),
		Err:   ErrOutOfRange,
		o:     optCount,
		with: fmt.Sprintf("with Interval %s: Interval*Count is the keepalive abort threshold, at most %s",
			appendDuration(nil, c.Interval), formatValue(optUserTimeout, int64(maxAbortThreshold), time.Millisecond)),
	}
}

// pairError returns the error for the zero field zero of c, whose partner
// set is not zero.
func pairError(zero, set option, c Config) *FieldError {
	what := fmt.Sprintf("%s 0 with %s %s", optionField[zero], optionField[set], formatValue(set, c.get(set), 0))
	return &FieldError{
		Field: optionField[zero],
		o:     zero,
		Err: unsupported(what, "the system derives the one of Interval and Count left unset from the other "+
			"and its keepalive abort threshold (TCP_KEEPALIVE_ABORT_THRESHOLD), so the socket would not hold the Config; "+
			"set Interval and Count together, or neither"),
	}
}

// thresholdPair returns the Interval and Count in force on a socket that
// reports interval (TCP_KEEPINTVL, whole seconds, truncated), count
// (TCP_KEEPCNT) and abort (TCP_KEEPALIVE_ABORT_THRESHOLD), where sysAbort
// is the system's threshold (needed only when interval and count are zero).
// Zero and zero mean that the socket sets neither and has the system's
// threshold: probes back off until it. Any other state was made by other
// code and no Config expresses it: the error wraps errors.ErrUnsupported.
func thresholdPair(interval time.Duration, count int64, abort, sysAbort time.Duration) (time.Duration, int64, error) {
	const what = "reading Interval and Count back"
	if interval == 0 && count == 0 {
		if abort == sysAbort {
			return 0, 0, nil
		}
		return 0, 0, unsupported(what, fmt.Sprintf("the socket sets neither TCP_KEEPINTVL nor TCP_KEEPCNT, "+
			"but its keepalive abort threshold (TCP_KEEPALIVE_ABORT_THRESHOLD) is %s, not the system's %s: "+
			"other code set it, and its probes back off until it, which no Interval and Count express",
			thresholdText(abort), thresholdText(sysAbort)))
	}
	if interval > 0 && count > 0 && count <= int64(math.MaxInt64/interval) && interval*time.Duration(count) == abort {
		return interval, count, nil
	}
	return 0, 0, unsupported(what, fmt.Sprintf("TCP_KEEPINTVL %s times TCP_KEEPCNT %d is not the keepalive abort "+
		"threshold (TCP_KEEPALIVE_ABORT_THRESHOLD) %s: other code set one of them without the other, "+
		"and the system derived its partner from the threshold",
		appendDuration(nil, interval), count, thresholdText(abort)))
}

// thresholdText writes a threshold in milliseconds, as the option holds it.
func thresholdText(d time.Duration) string {
	return formatValue(optUserTimeout, int64(d), time.Millisecond)
}

// backoffDetection returns the longest time a socket that sets neither
// Interval nor Count, with the keepalive abort threshold abort, takes to
// drop an idle connection whose peer has vanished: Idle, then the
// threshold, then up to one backed-off probe interval (at most rtoMax, the
// largest retransmission timeout) until the timer that finds it passed. A
// zero threshold means probes never end: never, the largest Duration.
func backoffDetection(idle, abort, rtoMax time.Duration) time.Duration {
	if abort <= 0 {
		return never
	}
	if idle > never-abort-rtoMax {
		return never
	}
	return idle + abort + rtoMax
}
