package idletimeout

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLadder checks the property the resolution rests on: consecutive
// points at most max(1s, 2% of the lower) apart, whole seconds, from 1s to
// Max.
func TestLadder(t *testing.T) {
	for _, m := range []time.Duration{2 * time.Second, 3 * time.Second, 50 * time.Second, 101 * time.Second, 5 * time.Minute, 2 * time.Hour, park} {
		l := ladder(m)
		require.NotEmpty(t, l)
		assert.Equal(t, time.Second, l[0], "first point")
		assert.Equal(t, m, l[len(l)-1], "last point")
		for i := 1; i < len(l); i++ {
			gap := l[i] - l[i-1]
			if gap <= 0 || gap > max(time.Second, l[i-1]/50) || l[i]%time.Second != 0 {
				t.Fatalf("max %v: points %v and %v", m, l[i-1], l[i])
			}
		}
	}
	for _, tt := range []struct {
		max  time.Duration
		want int
	}{{2 * time.Second, 2}, {time.Minute, 60}, {5 * time.Minute, 165}, {time.Hour, 294}, {2 * time.Hour, 329}, {park, 406}} {
		assert.Len(t, ladder(tt.max), tt.want, "points for %v", tt.max)
	}
}

// TestChoose checks the selection of a pass that cannot test every
// candidate: at most n points, the highest among them, and at most g−1
// untested candidates in any gap, below the lowest chosen included.
func TestChoose(t *testing.T) {
	for m := 1; m <= 420; m++ {
		cands := make([]time.Duration, m)
		for i := range cands {
			cands[i] = time.Duration(3*i+1) * time.Second
		}
		for n := 1; n <= m+2; n++ {
			got := choose(cands, n)
			if m <= n {
				require.Equal(t, cands, got)
				continue
			}
			g := (m + n - 1) / n
			require.LessOrEqual(t, len(got), n, "m %d n %d", m, n)
			require.Equal(t, cands[m-1], got[len(got)-1], "m %d n %d: highest chosen", m, n)
			untested, widest := 0, 0
			j := 0
			for _, c := range cands {
				if j < len(got) && got[j] == c {
					widest = max(widest, untested)
					untested = 0
					j++
					continue
				}
				untested++
			}
			require.Equal(t, len(got), j, "m %d n %d: chosen points are candidates, ascending", m, n)
			require.LessOrEqual(t, widest, g-1, "m %d n %d: widest gap", m, n)
		}
	}
}

// TestPasses checks passes against the worst case of choose: the next
// pass takes up the widest gap.
func TestPasses(t *testing.T) {
	for m := 1; m <= 420; m++ {
		for n := 1; n <= 60; n++ {
			want, left := 1, m
			for left > n {
				cands := make([]time.Duration, left)
				for i := range cands {
					cands[i] = time.Duration(i+1) * time.Second
				}
				got := choose(cands, n)
				widest, prev := 0, time.Duration(0)
				for _, c := range got {
					widest = max(widest, int((c-prev)/time.Second)-1)
					prev = c
				}
				left = widest
				want++
			}
			require.Equal(t, want, passes(m, n), "m %d n %d", m, n)
		}
	}
}
