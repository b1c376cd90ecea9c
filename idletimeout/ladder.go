package idletimeout

import "time"

// The ladder is the list of silences a search tests: 1s, then each point
// plus step(point), then Max. See the package documentation for what its
// spacing guarantees.

// step returns the distance from the ladder point x to the next one:
// ⌊x/50⌋ whole seconds, at least 1s, so never more than 2% of x past 50s.
func step(x time.Duration) time.Duration {
	return max(x/time.Second/50, 1) * time.Second
}

// ladder returns the silences that resolve every timeout up to maxT: 1s,
// then each point plus step of it while below maxT, then maxT.
func ladder(maxT time.Duration) []time.Duration {
	var pts []time.Duration
	for x := time.Second; x < maxT; x += step(x) {
		pts = append(pts, x)
	}
	return append(pts, maxT)
}

// choose returns the points of cands, ascending, that a pass with n flows
// for tests tests: all of them when they fit, else every g-th counted down
// from the highest, g = ⌈m/n⌉ for m candidates. The highest is always
// chosen, so that a path that keeps flows longer than all of them is known
// after one pass; every gap, below the lowest chosen point included, holds
// at most g−1 untested candidates.
func choose(cands []time.Duration, n int) []time.Duration {
	m := len(cands)
	if m <= n {
		return cands
	}
	g := (m + n - 1) / n
	var out []time.Duration
	for i := (m - 1) % g; i < m; i += g {
		out = append(out, cands[i])
	}
	return out
}

// passes returns the most passes a search over m candidates takes with n
// flows for tests in each: after a pass that could not test them all, the
// timeout lies in a gap of at most ⌈m/n⌉−1 untested candidates, which the
// next pass takes up.
func passes(m, n int) int {
	p := 1
	for m > n {
		m = (m+n-1)/n - 1
		p++
	}
	return p
}
