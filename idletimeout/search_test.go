package idletimeout

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests drive the search engine with a simulated path on a virtual
// clock, so that hours of silence take no time: they check the bounds the
// package documentation proves, over many timeouts.

// labPath is a simulated path with the delays of a real one, rounded up:
// a 20ms round trip, 5ms to connect, the driver's 10ms poll, kernel
// timers 10ms late.
func labPath(timeout time.Duration) simPath {
	return simPath{timeout: timeout, rtt: 20 * time.Millisecond, dialTime: 5 * time.Millisecond, pollDelay: 10 * time.Millisecond, slack: 10 * time.Millisecond}
}

// resolution is the widest the bounds may be for a timeout t.
func resolution(t time.Duration) time.Duration { return max(time.Second, t/50) }

// dialSpread is the time until the last of n test flows connects: the
// first alone, then one every dialGap, each taking dialTime (shorter than
// dialGap × dialConcurrency).
func dialSpread(n int, dialTime time.Duration) time.Duration {
	return dialTime + time.Duration(n-1)*max(dialGap, dialTime/dialConcurrency) + dialTime
}

// dropBound is the latest a one-pass search may answer for a path that
// silently drops flows silent for timeout, as the package documentation
// proves: the first tested silence at or past the timeout, U < timeout +
// resolution, is probed once the flow has been silent that long, after
// at most the dial spread D; its death is known Count probes later; the
// reserve that re-tests it connected Count·Interval + lead + reserveSlack
// after D, plus a connect, and probes after the same silence; its death
// is known Count probes later. Each kernel timer may be slack late.
func dropBound(p simPath, s settings, timeout time.Duration) time.Duration {
	cv := time.Duration(s.count) * s.interval
	return timeout + resolution(timeout) + dialSpread(len(ladder(s.max)), p.dialTime) + p.dialTime +
		2*cv + lead + reserveSlack + time.Duration(s.count+1)*p.slack
}

// timeouts returns the timeouts the sweeps check: every second to 3
// minutes, then every 7s to 40 minutes, every 97s to two hours, and for
// each a value half a second past it, where the timeout falls between two
// tested silences.
func timeouts(maxT time.Duration) []time.Duration {
	var ts []time.Duration
	add := func(t time.Duration) {
		if t <= maxT {
			ts = append(ts, t, t+500*time.Millisecond)
		}
	}
	for t := 2 * time.Second; t <= 3*time.Minute; t += time.Second {
		add(t)
	}
	for t := 3 * time.Minute; t <= 40*time.Minute; t += 7 * time.Second {
		add(t)
	}
	for t := 40 * time.Minute; t < 2*time.Hour; t += 97 * time.Second {
		add(t)
	}
	return ts
}

// checkBounds checks that the truth lies between the bounds and that they
// are within the resolution.
func checkBounds(t *testing.T, r Result, truth time.Duration, slack time.Duration) bool {
	t.Helper()
	ok := assert.Less(t, r.Survived, truth, "survived must be below the timeout") &&
		assert.GreaterOrEqual(t, r.Died+slack, truth, "died must be at or past the timeout") &&
		assert.LessOrEqual(t, r.Died-r.Survived, resolution(truth), "bounds %v..%v wider than the resolution", r.Survived, r.Died)
	return ok
}

func TestSearchDrop(t *testing.T) {
	// A minute of CPU under the race detector, beside the lab's waits.
	t.Parallel()
	var worstShort, worstAfterDied time.Duration
	for _, truth := range timeouts(2 * time.Hour) {
		p := labPath(truth)
		x := newSim(t, p, Options{})
		r, err := x.run()
		require.NoError(t, err)
		if !assert.Equal(t, CauseDrop, r.Cause, "timeout %v", truth) || !checkBounds(t, r, truth, p.slack) {
			t.Fatalf("timeout %v: %+v", truth, r)
		}
		bound := dropBound(p, x.e.s, truth)
		if !assert.LessOrEqual(t, r.Elapsed, bound, "timeout %v: answered after %v, bound %v", truth, r.Elapsed, bound) {
			t.FailNow()
		}
		assert.Equal(t, 1, r.Passes)
		assert.LessOrEqual(t, x.maxOpen, x.e.s.flows, "connections open at once")
		assert.Equal(t, 0, r.Spurious)
		if truth <= 50*time.Second {
			worstShort = max(worstShort, r.Elapsed-truth)
		}
		worstAfterDied = max(worstAfterDied, r.Elapsed-r.Died)
	}
	t.Logf("drop: answer at most %v after a timeout of up to 50s, and at most %v after the first tested silence that lost a flow", worstShort, worstAfterDied)
}

func TestSearchReset(t *testing.T) {
	// A minute of CPU under the race detector, beside the lab's waits.
	t.Parallel()
	var worst time.Duration
	for _, truth := range timeouts(2 * time.Hour) {
		p := labPath(truth)
		p.reset = true
		x := newSim(t, p, Options{})
		r, err := x.run()
		require.NoError(t, err)
		if !assert.Equal(t, CauseReset, r.Cause, "timeout %v", truth) || !checkBounds(t, r, truth, p.slack) {
			t.Fatalf("timeout %v: %+v", truth, r)
		}
		// A reset answering a probe is re-tested too, since a server
		// resets a connection it never accepted: the reserve connected
		// Count·Interval + lead + reserveSlack after the last test flow
		// probes after the same silence, and its reset comes a round
		// trip later.
		cv := time.Duration(x.e.s.count) * x.e.s.interval
		bound := truth + resolution(truth) + dialSpread(len(x.e.full), p.dialTime) + p.dialTime + cv + lead + reserveSlack + p.rtt + 2*p.slack
		if !assert.LessOrEqual(t, r.Elapsed, bound, "timeout %v", truth) {
			t.FailNow()
		}
		assert.Equal(t, EndProbeReset, r.End)
		assert.NotZero(t, r.Retests)
		worst = max(worst, r.Elapsed-truth)
	}
	t.Logf("reset: worst answer %v after the timeout", worst)
}

// TestSearchActiveReset has the middlebox reset both ends of a flow the
// moment it forgets it, counting silence from the flow's last packet: the
// unprobed flows measure the timeout itself, and a flow whose probe was
// answered, reset that long after the answer rather than after its last
// data, shows that the path reset them, not the server.
func TestSearchActiveReset(t *testing.T) {
	for _, truth := range []time.Duration{2500 * time.Millisecond, 8 * time.Second, 350 * time.Second, 4000 * time.Second} {
		p := labPath(truth)
		p.activeReset = true
		r, err := newSim(t, p, Options{}).run()
		require.NoError(t, err)
		assert.Equal(t, CauseReset, r.Cause, "timeout %v", truth)
		assert.Equal(t, EndReset, r.End)
		assert.Equal(t, truth, r.Died, "measured")
		checkBounds(t, r, truth, 0)
	}
}

// TestSearchServerClose has the server end idle connections by itself,
// counting idleness from the last data, by FIN or reset, with or without
// a greeting: the answer is the server's timeout, the path known to keep
// flows that long; a path that forgets first is found instead.
func TestSearchServerClose(t *testing.T) {
	for _, tt := range []struct {
		name                   string
		timeout, close         time.Duration
		reset, greet, farewell bool
		cause                  Cause
	}{
		{"server closes, path keeps", 0, 7300 * time.Millisecond, false, false, false, CauseServerClose},
		{"server closes before the path forgets", 30 * time.Second, 7 * time.Second, false, false, false, CauseServerClose},
		{"long", 0, 601 * time.Second, false, false, false, CauseServerClose},
		{"path forgets first", 10 * time.Second, 12 * time.Second, false, false, false, CauseDrop},
		// MariaDB's connect_timeout: a greeting, then a reset.
		{"greeting, then reset", 0, 10 * time.Second, true, true, false, CauseServerClose},
		{"reset", 0, 7300 * time.Millisecond, true, false, false, CauseServerClose},
		// The reset comes a few milliseconds after the probe of the flow
		// tested at 10s: a reset answering that probe is the server's.
		{"reset at a tested silence", 0, 9995 * time.Millisecond, true, true, false, CauseServerClose},
		// PostgreSQL's idle_session_timeout: a FATAL message, then a
		// FIN.
		{"farewell, then FIN", 0, 7300 * time.Millisecond, false, false, true, CauseServerClose},
		{"farewell, then FIN, path forgets first", 6 * time.Second, 10 * time.Second, false, false, true, CauseDrop},
		// sshd's LoginGraceTime: a greeting, then a FIN.
		{"greeting, then FIN", 30 * time.Second, 5 * time.Second, false, true, false, CauseServerClose},
		{"greeting, reset, path forgets first", 6 * time.Second, 10 * time.Second, true, true, false, CauseDrop},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := labPath(tt.timeout)
			p.serverClose, p.serverReset, p.greet, p.farewell = tt.close, tt.reset, tt.greet, tt.farewell
			x := newSim(t, p, Options{})
			r, err := x.run()
			require.NoError(t, err)
			t.Logf("%+v", r)
			assert.Equal(t, tt.cause, r.Cause)
			if tt.cause == CauseDrop {
				checkBounds(t, r, tt.timeout, p.slack)
				return
			}
			end := EndFIN
			if tt.reset {
				end = EndReset
			}
			assert.Equal(t, end, r.End)
			assert.Equal(t, tt.greet, r.Spoke, "spoke")
			// The end leaves the server close after the last data and
			// crosses the path half a round trip later; with a
			// greeting, the last data came half a round trip after the
			// connect.
			assert.Equal(t, tt.close+p.rtt/2, r.Died, "measured")
			assert.Equal(t, r.Died.Truncate(time.Second), r.Survived, "the path kept the flows until the server ended them")
			assert.LessOrEqual(t, r.Elapsed, tt.close+p.rtt+dialSpread(len(x.e.full), p.dialTime)+time.Second)
			assert.Zero(t, r.Unaccepted)
		})
	}
}

// TestSearchServerKeepalive has the server send keepalive probes of its
// own after 15s of silence, as Go servers do by default: they refresh the
// middlebox, so no longer silence can be measured, and the search says so
// rather than report that the path keeps flows for Max.
func TestSearchServerKeepalive(t *testing.T) {
	for _, tt := range []struct {
		name           string
		probe          time.Duration // the server's keepalive idle
		timeout        time.Duration
		max            time.Duration
		cause          Cause
		survived, died time.Duration
		heard          time.Duration
		within         time.Duration // the most the answer may take
	}{
		// Heard within 16s, and again within the next 16s (plus
		// listenSlack): for two flows.
		{"path never forgets", 15 * time.Second, 0, time.Minute, CauseNone, 15 * time.Second, 0, 16 * time.Second, 2*17*time.Second + listenSlack},
		{"path forgets later", 15 * time.Second, 20 * time.Second, time.Minute, CauseNone, 15 * time.Second, 0, 16 * time.Second, 2*17*time.Second + listenSlack},
		{"path forgets first", 15 * time.Second, 8 * time.Second, time.Minute, CauseDrop, 7 * time.Second, 8 * time.Second, 0, 15 * time.Second},
		// Redis's default, 300s: the flows tested at 303s and 309s are
		// heard from, long after any handshake could be sent again, so
		// the answer needs no second hearing.
		{"after 5 minutes", 300 * time.Second, 0, 10 * time.Minute, CauseNone, 298 * time.Second, 0, 303 * time.Second, 309*time.Second + time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := labPath(tt.timeout)
			p.serverProbe = tt.probe
			r, err := newSim(t, p, Options{Max: tt.max}).run()
			require.NoError(t, err)
			t.Logf("%+v", r)
			assert.Equal(t, tt.cause, r.Cause)
			assert.Equal(t, tt.survived, r.Survived)
			assert.Equal(t, tt.died, r.Died)
			assert.Equal(t, tt.heard, r.Heard)
			assert.Less(t, r.Elapsed, tt.within, "the search ends once nothing more can be measured")
		})
	}
}

func TestSearchNone(t *testing.T) {
	for _, m := range []time.Duration{2 * time.Second, 5 * time.Second, time.Hour} {
		p := labPath(0)
		x := newSim(t, p, Options{Max: m})
		r, err := x.run()
		require.NoError(t, err)
		assert.Equal(t, CauseNone, r.Cause)
		assert.Equal(t, m, r.Survived)
		assert.Zero(t, r.Died)
		// Not after Max: the flow tested at Max is answered a round
		// trip after its probe.
		assert.LessOrEqual(t, r.Elapsed, m+dialSpread(len(x.e.full), p.dialTime)+p.slack+p.rtt+p.pollDelay)
	}
}

// TestSearchLostProbes loses chosen probes and answers: a flow lost to
// lost packets is re-tested, and the answer stays right.
func TestSearchLostProbes(t *testing.T) {
	const truth = 8500 * time.Millisecond // between the tests at 8s and 9s
	// The deaths at 9s, 10s and 11s are each given two more flows as soon
	// as flows can test them again: the two reserves, and flows kept after
	// an answer; the longer silences are tested again before the
	// re-tests of 9s settle it.
	for _, tt := range []struct {
		name              string
		probe, ack        func(idle time.Duration, k, n int) bool
		retests, spurious int
		survived, died    time.Duration
		count             int
	}{
		{
			// The flow tested at 8s loses its first probe; its second,
			// a second later, finds the flow forgotten. Only the
			// re-test tells that 8s of silence is kept.
			name:    "first probe lost just below the timeout",
			probe:   func(idle time.Duration, k, n int) bool { return idle == 8*time.Second && k == 1 && n == 0 },
			retests: 5, spurious: 1, survived: 8 * time.Second, died: 9 * time.Second,
		},
		{
			// The flow tested at 4s survives before this death is
			// known, which contradicts it: no re-test is needed.
			name:    "both probes lost far below the timeout",
			probe:   func(idle time.Duration, k, n int) bool { return idle == 3*time.Second && k == 1 },
			retests: 3, spurious: 1, survived: 8 * time.Second, died: 9 * time.Second,
		},
		{
			name:    "both answers lost",
			ack:     func(idle time.Duration, k, n int) bool { return idle == 5*time.Second && k == 1 },
			retests: 4, spurious: 1, survived: 8 * time.Second, died: 9 * time.Second,
		},
		{
			name:    "one lost probe with Count 2 loses nothing",
			probe:   func(idle time.Duration, k, n int) bool { return idle == 4*time.Second && n == 0 },
			retests: 3, spurious: 0, survived: 8 * time.Second, died: 9 * time.Second,
		},
		{
			// Two losses in a row on the same silence, each of
			// probability p: the third flow's probe is answered.
			name:    "the re-test's first probe lost too",
			probe:   func(idle time.Duration, k, n int) bool { return idle == 8*time.Second && n == 0 && k <= 2 },
			retests: 5, spurious: 2, survived: 8 * time.Second, died: 9 * time.Second,
		},
		{
			// Three in a row, p³: the search is then wrong by one step.
			name:    "both re-tests' first probes lost too",
			probe:   func(idle time.Duration, k, n int) bool { return idle == 8*time.Second && n == 0 && k <= 3 },
			retests: 4, spurious: 0, survived: 7 * time.Second, died: 8 * time.Second,
		},
		{
			name:  "Count 1: a lost answer is re-tested",
			ack:   func(idle time.Duration, k, n int) bool { return idle == 6*time.Second && k == 1 },
			count: 1, retests: 3, spurious: 1, survived: 8 * time.Second, died: 9 * time.Second,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := labPath(truth)
			p.loseProbe, p.loseAck = tt.probe, tt.ack
			r, err := newSim(t, p, Options{Max: time.Minute, Count: tt.count}).run()
			require.NoError(t, err)
			t.Logf("%+v", r)
			assert.Equal(t, CauseDrop, r.Cause)
			assert.Equal(t, tt.survived, r.Survived)
			assert.Equal(t, tt.died, r.Died)
			assert.Equal(t, tt.retests, r.Retests)
			assert.Equal(t, tt.spurious, r.Spurious)
		})
	}
}

// TestSearchRandomLoss loses a share of probes and answers at random. A
// wrong answer needs three losses in a row on the same silence (the
// flow's and both its re-tests'): for 3% per packet, about 0.02% of
// searches; the seeds here give none.
func TestSearchRandomLoss(t *testing.T) {
	var retests, spurious, searches int
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 12))
		lose := func(time.Duration, int, int) bool { return rng.IntN(100) < 3 }
		for _, truth := range []time.Duration{3 * time.Second, 8500 * time.Millisecond, 20 * time.Second, 61 * time.Second, 350 * time.Second} {
			p := labPath(truth)
			p.loseProbe, p.loseAck = lose, lose
			r, err := newSim(t, p, Options{Max: 10 * time.Minute}).run()
			require.NoError(t, err)
			if !checkBounds(t, r, truth, p.slack) {
				t.Fatalf("seed %d, timeout %v: %+v", seed, truth, r)
			}
			retests += r.Retests
			spurious += r.Spurious
			searches++
		}
	}
	t.Logf("%d searches at 3%% loss: %d re-tests, %d of them lost packets", searches, retests, spurious)
	assert.NotZero(t, spurious, "lost packets must have caused re-tests")
}

// TestSearchFewFlows checks the cost of fewer flows: the same resolution,
// in at most the planned passes, each lasting at most the first pass's
// first tested silence past the timeout plus the overhead of one pass.
func TestSearchFewFlows(t *testing.T) {
	for _, flows := range []int{4, 8, 20, 50, 100} {
		var worstRatio float64
		var worstShort time.Duration
		for i, truth := range timeouts(2 * time.Hour) {
			if i%5 != 0 {
				continue
			}
			p := labPath(truth)
			x := newSim(t, p, Options{Flows: flows})
			r, err := x.run()
			require.NoError(t, err)
			if !assert.Equal(t, CauseDrop, r.Cause) || !checkBounds(t, r, truth, p.slack) {
				t.Fatalf("flows %d, timeout %v: %+v", flows, truth, r)
			}
			planned := planPasses(x.e.s)
			assert.LessOrEqual(t, r.Passes, planned, "passes")
			assert.LessOrEqual(t, x.maxOpen, flows, "connections open at once")
			first := choose(x.e.full, flows-reserves)
			var u1 time.Duration
			for _, y := range first {
				if y >= truth {
					u1 = y
					break
				}
			}
			perPass := dropBound(p, x.e.s, u1) - resolution(u1)
			if !assert.LessOrEqual(t, r.Elapsed, time.Duration(r.Passes)*perPass, "flows %d, timeout %v, %d passes", flows, truth, r.Passes) {
				t.FailNow()
			}
			if truth >= time.Minute {
				worstRatio = max(worstRatio, float64(r.Elapsed)/float64(truth))
			} else {
				worstShort = max(worstShort, r.Elapsed)
			}
		}
		t.Logf("flows %d: at most %d passes; answer at most %v for a timeout under 1m, %.2f × the timeout from 1m to 2h",
			flows, passes(len(ladder(2*time.Hour)), flows-reserves), worstShort, worstRatio)
	}
}

// TestSearchServerQueue has the server, a forking one with a small
// listen queue, fail to accept some connections: a connect that waited
// for its SYN to be sent again slows the pace of the rest, and a
// connection the server never accepted, reset at its first probe, is
// re-tested and not taken for the path.
func TestSearchServerQueue(t *testing.T) {
	for _, tt := range []struct {
		name       string
		timeout    time.Duration
		unaccepted func(n int) bool
		resent     func(n int) bool
		cause      Cause
	}{
		{"never accepted, path keeps", 0, func(n int) bool { return n >= 4 && n < 9 }, nil, CauseNone},
		{"never accepted, path drops", 10 * time.Second, func(n int) bool { return n >= 4 && n < 9 }, nil, CauseDrop},
		{"never accepted, just below the timeout", 10 * time.Second, func(n int) bool { return n == 8 }, nil, CauseDrop},
		{"SYNs sent again", 10 * time.Second, nil, func(n int) bool { return n >= 3 && n < 6 }, CauseDrop},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := labPath(tt.timeout)
			p.unaccepted, p.resent = tt.unaccepted, tt.resent
			x := newSim(t, p, Options{Max: 30 * time.Second})
			r, err := x.run()
			require.NoError(t, err)
			t.Logf("%+v", r)
			assert.Equal(t, tt.cause, r.Cause)
			if tt.cause == CauseNone {
				assert.Equal(t, 30*time.Second, r.Survived)
			} else {
				checkBounds(t, r, tt.timeout, p.slack)
				assert.Equal(t, EndUnanswered, r.End)
			}
			if tt.unaccepted != nil {
				assert.NotZero(t, r.Unaccepted, "resets of connections the server never accepted")
			}
			if tt.resent != nil {
				assert.Equal(t, 3, r.Resent)
				assert.Equal(t, dialGap<<3, x.e.gap, "the pace halved for each")
			}
			// The test flows connect one per dialGap at most, after the
			// first alone.
			for i := 2; i < len(x.e.points); i++ {
				if d := x.started[i] - x.started[i-1]; d < dialGap {
					t.Errorf("connects %d and %d started %v apart, less than %v", i-1, i, d, dialGap)
				}
			}
		})
	}
}

// TestSearchRefused has the server end some connections at once, as sshd
// does past MaxStartups: they are counted, their tests given to other
// flows, and the answer is still the server's timeout or the path's.
func TestSearchRefused(t *testing.T) {
	p := labPath(0)
	p.serverClose, p.greet = 5*time.Second, true
	p.refuseConn = func(n int) bool { return n >= 3 && n%2 == 1 }
	r, err := newSim(t, p, Options{Max: 20 * time.Second}).run()
	require.NoError(t, err)
	t.Logf("%+v", r)
	assert.Equal(t, CauseServerClose, r.Cause)
	assert.Equal(t, 5*time.Second+p.rtt/2, r.Died)
	assert.NotZero(t, r.Refused)

	// A server that holds 10 connections at most, and ends each after
	// 20s: once it refuses one, the search opens no more than it holds,
	// rather than dial again and again.
	p = labPath(0)
	p.serverClose, p.maxConns = 20*time.Second, 10
	x := newSim(t, p, Options{Max: time.Minute})
	r, err = x.run()
	require.NoError(t, err)
	t.Logf("%+v", r)
	assert.Equal(t, CauseServerClose, r.Cause)
	assert.Equal(t, 20*time.Second+p.rtt/2, r.Died)
	// The connects in flight when the first refusal came are refused
	// too: about a round trip's worth, one every 5ms.
	assert.LessOrEqual(t, r.Refused, 5, "connections refused")
	assert.LessOrEqual(t, x.maxOpen, 10+5, "connections open at once")
	// Two of the connections it holds are kept from every test, so that
	// their ends, after 20s, tell that the path kept them that long.
	assert.Less(t, r.Elapsed, 21*time.Second, "known when the server ends the connections it holds")

	p = labPath(6 * time.Second)
	p.refuseConn = func(n int) bool { return n >= 3 && n%2 == 1 }
	r, err = newSim(t, p, Options{Max: 20 * time.Second}).run()
	require.NoError(t, err)
	t.Logf("%+v", r)
	assert.Equal(t, CauseDrop, r.Cause)
	checkBounds(t, r, 6*time.Second, p.slack)
	assert.NotZero(t, r.Refused)
}

// TestSearchHeardOnce has segments without data reach some flows once: a
// handshake's last segment lost, and the server's SYN-ACK sent again a
// second after the connect. They are not the server's keepalive, which
// comes again and again: no ceiling, and the answer stays right, for test
// flows next to each other and for the reserves (one reserve heard from
// once used to count twice, and confirm itself).
func TestSearchHeardOnce(t *testing.T) {
	for _, tt := range []struct {
		name      string
		handshake func(n int) int
	}{
		{"two test flows next to each other, below the timeout", func(n int) int { return b2i(n == 5 || n == 6) }},
		{"two test flows next to each other, above the timeout", func(n int) int { return b2i(n == 10 || n == 11) }},
		{"the reserves", func(n int) int { return b2i(n == 30 || n == 31) }},
		// Heard from twice running, as a server's keepalive would be,
		// but a flow alone.
		{"twice, one flow", func(n int) int { return 2 * b2i(n == 1) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := labPath(10 * time.Second)
			p.handshake = tt.handshake
			p.loseProbe = func(idle time.Duration, k, n int) bool { return idle == 9*time.Second && k == 1 && n == 0 }
			r, err := newSim(t, p, Options{Max: 30 * time.Second}).run()
			require.NoError(t, err)
			t.Logf("%+v", r)
			assert.Equal(t, CauseDrop, r.Cause)
			assert.Zero(t, r.Heard, "heard")
			checkBounds(t, r, 10*time.Second, p.slack)
		})
	}
}

// TestSearchLateReports has every connect reported 100ms late, as on a
// machine too busy to run the dialing goroutines at once: the kernel's
// probes leave before the search reckons, and their answers still count.
func TestSearchLateReports(t *testing.T) {
	for _, truth := range []time.Duration{0, 10 * time.Second} {
		p := labPath(truth)
		p.reportLate = 100 * time.Millisecond
		r, err := newSim(t, p, Options{Max: 30 * time.Second}).run()
		require.NoError(t, err)
		t.Logf("%+v", r)
		if truth == 0 {
			assert.Equal(t, CauseNone, r.Cause)
			assert.Equal(t, 30*time.Second, r.Survived)
			continue
		}
		assert.Equal(t, CauseDrop, r.Cause)
		checkBounds(t, r, truth, p.slack)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestSearchHeardFirstMinute has the handshakes of the flows that test
// silences past a minute, next to the path's timeout, sent again a second
// after their connect: the middleboxes then count their silence from that
// second, the kernel from the connect, so their tests would be a second
// short. Heard from in their first minute, they test nothing, their tests
// go to other flows, and nothing is taken for the server's keepalive.
func TestSearchHeardFirstMinute(t *testing.T) {
	const truth = 80500 * time.Millisecond
	p := labPath(truth)
	p.handshake = func(n int) int { return b2i(n >= 77 && n <= 82) } // the flows tested at 78s to 83s
	r, err := newSim(t, p, Options{Max: 100 * time.Second}).run()
	require.NoError(t, err)
	t.Logf("%+v", r)
	assert.Equal(t, CauseDrop, r.Cause)
	checkBounds(t, r, truth, p.slack)
	assert.Zero(t, r.Heard)
}

// TestSearchServerData has the server send data of its own after each 10s
// of silence: no longer silence can be measured, and the search says so.
func TestSearchServerData(t *testing.T) {
	p := labPath(0)
	p.serverData = 10 * time.Second
	r, err := newSim(t, p, Options{Max: time.Minute}).run()
	require.NoError(t, err)
	t.Logf("%+v", r)
	assert.Equal(t, CauseNone, r.Cause)
	assert.Equal(t, 11*time.Second, r.Heard)
	assert.Equal(t, 10*time.Second, r.Survived)
	assert.Less(t, r.Elapsed, 2*(11*time.Second+time.Second)+listenSlack)
}

func TestSearchErrors(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		p := labPath(0)
		p.refuse = true
		x := newSim(t, p, Options{})
		_, err := x.run()
		require.Error(t, err)
		assert.Equal(t, "keepalive: 192.0.2.1:80 connection refused", err.Error())
		assert.Equal(t, 0, x.open, "connections left open")
		assert.Equal(t, dialConcurrency, dialConcurrency) // only one dial tried:
		assert.Len(t, x.e.flows, len(x.e.full), "flows made")
	})
	t.Run("every connection lost", func(t *testing.T) {
		// Every flow receives a segment of its handshake again, a
		// second after its connect: only the flows answered by then
		// can test longer silences, not all of them, and the search
		// says so rather than report a path that keeps flows for Max.
		p := labPath(0)
		p.handshake = func(int) int { return 1 }
		x := newSim(t, p, Options{Max: 30 * time.Second})
		r, err := x.run()
		require.Error(t, err)
		t.Logf("%+v: %v", r, err)
		assert.Equal(t, fmt.Sprintf("keepalive: 192.0.2.1:80: after 3 passes, silences between %v and 30s are still untested: their connections were lost to something other than the path (the server ended or refused them, or sent segments of its own)", r.Survived), err.Error())
		assert.Less(t, r.Survived, 30*time.Second)
		assert.Equal(t, 0, x.open, "connections left open")
	})
	t.Run("closes at once", func(t *testing.T) {
		p := labPath(0)
		p.serverClose = 30 * time.Millisecond
		x := newSim(t, p, Options{Max: time.Minute})
		_, err := x.run()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "keepalive: 192.0.2.1:80 closed or reset a connection 40ms after it opened")
		assert.Contains(t, err.Error(), "lower Flows, now 62")
		assert.Less(t, x.now, time.Second, "the error comes at once")
		assert.Equal(t, 0, x.open, "connections left open")
	})
}

// TestSearchProgress checks that progress is reported with the bounds
// narrowing and the pass counted.
func TestSearchProgress(t *testing.T) {
	var got []Progress
	p := labPath(5 * time.Second)
	x := newSim(t, p, Options{Max: 20 * time.Second, Progress: func(p Progress) { got = append(got, p) }})
	r, err := x.run()
	require.NoError(t, err)
	require.NotEmpty(t, got)
	assert.Equal(t, Progress{Elapsed: 0, Pass: 1, Open: 1}, got[0], "first report")
	last := got[len(got)-1]
	assert.Equal(t, Progress{Elapsed: r.Elapsed, Pass: 1, Open: 0, Survived: r.Survived, Died: r.Died}, last, "last report")
	for i := 1; i < len(got); i++ {
		assert.GreaterOrEqual(t, got[i].Elapsed, got[i-1].Elapsed)
		assert.GreaterOrEqual(t, got[i].Survived, got[i-1].Survived)
	}
	assert.Equal(t, fmt.Sprint(4*time.Second, 5*time.Second), fmt.Sprint(r.Survived, r.Died))
}
