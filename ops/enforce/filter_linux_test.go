package enforce_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// Filters choose flows by remote address and by port, in the sock_ops
// program (new connections) and in the iterator (existing ones) alike.
// Loopback gives flows whose two ends differ: a connection to 127.0.0.2
// comes from 127.0.0.1, so its dialled end's remote is 127.0.0.2 and its
// accepted end's 127.0.0.1.
func TestFilters(t *testing.T) {
	for _, existing := range []bool{false, true} {
		name := "new"
		if existing {
			name = "existing"
		}
		t.Run(name, func(t *testing.T) {
			// The listeners' ports are known once a helper has them: the
			// cases name listener 3's port as -1, and each case has a lab
			// and a helper of its own, so that no connection of one case
			// is left for another.
			cases := []struct {
				name                   string
				filter                 enforce.Filter
				listener               int
				dialled, accepted      bool // whether each end is set
				otherListener          int  // a flow the filter leaves alone
				otherDial, otherAccept bool
			}{
				{"remote 127.0.0.1/32", enforce.Filter{Remote: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}},
					0, true, true, 1, false, true},
				{"remote 127.0.0.2/32", enforce.Filter{Remote: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}},
					1, true, false, 0, false, false},
				{"remote ::1/128", enforce.Filter{Remote: []netip.Prefix{netip.MustParsePrefix("::1/128")}},
					2, true, true, 0, false, false},
				{"remote 10.0.0.0/8 or ::1/128", enforce.Filter{Remote: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
					2, true, true, 1, false, false},
				{"remote 0.0.0.0/0", enforce.Filter{Remote: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}},
					1, true, true, 2, false, false},
				{"port of listener 3", enforce.Filter{Ports: []uint16{portOf3}},
					3, true, true, 0, false, false},
				{"port of listener 3 and remote 127.0.0.2", enforce.Filter{Ports: []uint16{portOf3}, Remote: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}},
					1, false, false, 3, false, false},
			}
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					l := newLab(t)
					c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0", "127.0.0.2:0", "[::1]:0", "127.0.0.1:0"}}, 0)
					for i, p := range tc.filter.Ports {
						if p == portOf3 {
							tc.filter.Ports[i] = portOf(t, c.listeners[3])
						}
					}
					var in, out []pair
					if existing {
						in, out = c.dial(tc.listener, 1), c.dial(tc.otherListener, 1)
					}
					res := l.enforce(enforce.Options{Config: policy, Filter: tc.filter})
					if !existing {
						in, out = c.dial(tc.listener, 1), c.dial(tc.otherListener, 1)
					} else {
						want := btoi(tc.dialled) + btoi(tc.accepted) + btoi(tc.otherDial) + btoi(tc.otherAccept)
						require.Len(t, res.Existing, want, "%v", res.Existing)
					}
					set, unset := with(bare(t), policy), bare(t)
					pick := func(b bool) sockopts.Values {
						if b {
							return set
						}
						return unset
					}
					require.Equal(t, pick(tc.dialled), c.values(in[0].Dialled), "the dialled end %s -> %s", in[0].Dialled.Local, in[0].Dialled.Remote)
					require.Equal(t, pick(tc.accepted), c.values(in[0].Accepted), "the accepted end %s -> %s", in[0].Accepted.Local, in[0].Accepted.Remote)
					require.Equal(t, pick(tc.otherDial), c.values(out[0].Dialled), "the other flow's dialled end %s -> %s", out[0].Dialled.Local, out[0].Dialled.Remote)
					require.Equal(t, pick(tc.otherAccept), c.values(out[0].Accepted), "the other flow's accepted end %s -> %s", out[0].Accepted.Local, out[0].Accepted.Remote)
				})
			}
		})
	}
}

// portOf3 stands for the port of a helper's listener 3 in a case.
const portOf3 = 65535

// portOf returns the port of the address addr.
func portOf(t testing.TB, addr string) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	require.NoError(t, err)
	return ap.Port()
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
