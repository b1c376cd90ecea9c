package enforce_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// goDefault is what Go's net.Dialer and net.ListenConfig set after
// connecting and accepting when KeepAlive is zero: 15s, 15s, 9.
var goDefault = sockopts.Values{KeepAlive: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}

// A statically linked Go program sets its own keepalive after connecting
// and after accepting: with the policy winning, the fields the policy
// names keep its values and the others keep Go's; with the program
// winning, Go's values stay and the policy adds what Go leaves alone.
func TestWinsGoBinary(t *testing.T) {
	// Count zero: left to the program. Go sets no user timeout.
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, UserTimeout: 59 * time.Second}
	for _, tc := range []struct {
		wins      enforce.Wins
		keepalive string // the binary's -keepalive
		want      sockopts.Values
	}{
		{enforce.PolicyWins, "0", sockopts.Values{KeepAlive: true, Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 9, UserTimeout: 59 * time.Second}},
		{enforce.ProgramWins, "0", sockopts.Values{KeepAlive: true, Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9, UserTimeout: 59 * time.Second}},
		// Keepalive off in Go (KeepAlive: -1) sets nothing: the policy's
		// values, and the system's count.
		{enforce.PolicyWins, "-1s", sockopts.Values{}},
		{enforce.ProgramWins, "-1s", sockopts.Values{}},
	} {
		t.Run(tc.wins.String()+"/keepalive="+tc.keepalive, func(t *testing.T) {
			l := newLab(t)
			want := tc.want
			if tc.keepalive == "-1s" {
				want = with(bare(t), c)
			}
			// Existing connections, made before the policy, with Go's
			// values on them; then new ones.
			g := startGoDialer(t, l.cgroup, "-keepalive", tc.keepalive)
			before := bare(t)
			if tc.keepalive == "0" {
				before = goDefault
			}
			d0, a0 := g.pair(t)
			assert.Equal(t, before, readFrom(t, g.pid, d0), "the dialled end before the policy")
			res := l.enforce(enforce.Options{Config: c, Wins: tc.wins})
			assert.Len(t, res.Existing, 2)
			d1, a1 := g.pair(t)
			for _, s := range []struct {
				name string
				fd   int
			}{{"existing dialled", d0}, {"existing accepted", a0}, {"new dialled", d1}, {"new accepted", a1}} {
				assert.Equal(t, want, readFrom(t, g.pid, s.fd), "%s", s.name)
			}
			p := l.list()[0]
			if tc.keepalive == "0" && tc.wins == enforce.PolicyWins {
				// Go's SO_KEEPALIVE, TCP_KEEPIDLE and TCP_KEEPINTVL on the
				// two new ends were kept from changing the policy's.
				assert.Equal(t, uint64(6), p.Counts.Kept, "%+v", p.Counts)
			}
			if tc.keepalive == "0" && tc.wins == enforce.ProgramWins {
				// The existing ends had Go's values, which stayed.
				assert.Equal(t, uint64(2), p.Counts.Yielded, "%+v", p.Counts)
				for _, e := range res.Existing {
					// Go's count is its own too, but the policy leaves
					// count alone anyway.
					assert.Equal(t, enforce.FieldKeepAlive|enforce.FieldIdle|enforce.FieldInterval, e.Left, "%v", e)
					assert.Equal(t, enforce.FieldUserTimeout, e.Set, "%v", e)
				}
			}
		})
	}
}

// A program that sets options before connecting, as C programs do, or on
// its listening socket: with the policy winning, the policy's values
// replace them as the connection is established; with the program
// winning they stay, keepalive turned off explicitly too.
func TestWinsSetBeforeConnecting(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4}
	own := map[string]int{"keepalive": 0, "idle": 77, "count": 2}
	for _, wins := range []enforce.Wins{enforce.PolicyWins, enforce.ProgramWins} {
		t.Run(wins.String(), func(t *testing.T) {
			l := newLab(t)
			l.enforce(enforce.Options{Config: c, Wins: wins})
			conns := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}, Dial: own, Listener: own}, 0)
			pairs := conns.dial(0, 2)
			want := with(bare(t), c)
			if wins == enforce.ProgramWins {
				want.KeepAlive, want.Idle, want.Count = false, 77*time.Second, 2
			}
			conns.assertPairs(pairs, want, "set before connecting, and on the listener")
		})
	}
}

// On a Multipath TCP listener (Go's default since Go 1.24) the setsockopt
// program sees the listener's own options on the MPTCP socket, whose
// record does not pass to the plain TCP connections it accepts: there a
// program that wins keeps the values it set on the listener, which the
// accepted socket holds, but not keepalive turned off explicitly, which
// looks like a socket nobody set. The dialled end is as on plain TCP.
func TestWinsMPTCPListener(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4}
	own := map[string]int{"keepalive": 0, "idle": 77, "count": 2}
	l := newLab(t)
	l.enforce(enforce.Options{Config: c, Wins: enforce.ProgramWins})
	conns := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}, Dial: own, Listener: own, MPTCP: true}, 0)
	pairs := conns.dial(0, 1)
	want := with(bare(t), c)
	want.KeepAlive, want.Idle, want.Count = false, 77*time.Second, 2
	assert.Equal(t, want, conns.values(pairs[0].Dialled), "the dialled end")
	want.KeepAlive = true
	assert.Equal(t, want, conns.values(pairs[0].Accepted), "the accepted end")
}
