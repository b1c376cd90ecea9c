package enforce_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// A Multipath TCP connection end to end (both ends MPTCP sockets, as a Go
// listener, MPTCP by default, makes when an MPTCP client dials it) is one
// MPTCP socket per end, the one the process holds, over TCP subflows that
// the kernel makes and that no descriptor holds. The sock_ops program and
// the iterator see the subflows, which are TCP sockets of the cgroup, and
// set them: the keepalive probes go out on the subflows. The process's own
// MPTCP socket keeps reporting its own values, which the policy did not
// touch: getsockopt on the process's descriptor, and so audit's reading
// through pidfd_getfd, does not show the policy there. A subflow has no
// descriptor to read it through; the test reads it with the kernel's
// getsockopt from a BPF iterator (bpfsock's dump iterator).
func TestMPTCP(t *testing.T) {
	l := newLab(t)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}, MPTCP: true, DialMPTCP: true, LoopbackUp: true}, unix.CLONE_NEWNET)
	old := c.dial(0, 1)
	mptcpBare := bare(t)
	mptcpBare.MPTCP = true
	if v := c.values(old[0].Dialled); !v.MPTCP {
		t.Skipf("the kernel made a plain TCP socket for a Multipath TCP dial (net.mptcp.enabled is 0, or no MPTCP): %+v", v)
	}
	res := l.enforce(enforce.Options{Config: policy})
	assert.Len(t, res.Existing, 2, "the subflows of both ends: %v", res.Existing)
	new := c.dial(0, 1)

	subs := subflows(t, l)
	want := with(bare(t), policy)
	for _, p := range append(old, new...) {
		for _, end := range []sock{p.Dialled, p.Accepted} {
			s, ok := subs[[2]string{end.Local, end.Remote}]
			if assert.True(t, ok, "no subflow %s -> %s", end.Local, end.Remote) {
				assert.Equal(t, want, subflowValues(s), "the subflow %s -> %s, read by the kernel's getsockopt", end.Local, end.Remote)
			}
			assert.Equal(t, mptcpBare, c.values(end), "the process's own MPTCP socket %s -> %s, untouched", end.Local, end.Remote)
		}
	}
	ps := l.list()
	require.Len(t, ps, 1)
	assert.Equal(t, enforce.Counts{Dialled: 1, Accepted: 1, Existing: 2}, ps[0].Counts)
}

// A program that sets keepalive on its own MPTCP socket after connecting,
// as Go's net.Dialer does (15s, 15s, 9), has the kernel copy the values to
// the subflows; the setsockopt program sees the call on the MPTCP socket,
// which no policy set, and lets it through: the program's values win even
// where the policy should (PolicyWins), and the policy keeps the fields
// the program leaves alone (here the user timeout).
func TestMPTCPProgramSets(t *testing.T) {
	l := newLab(t)
	l.enforce(enforce.Options{Config: policy, Wins: enforce.PolicyWins})
	g := startGoDialer(t, l.cgroup, "-keepalive", "0", "-mptcp")
	d, a := g.pair(t)
	goMPTCP := goDefault
	goMPTCP.MPTCP = true
	for _, fd := range []int{d, a} {
		v := readFrom(t, g.pid, fd)
		if !v.MPTCP {
			t.Skipf("the kernel made a plain TCP socket for a Multipath TCP dial (net.mptcp.enabled is 0, or no MPTCP): %+v", v)
		}
		assert.Equal(t, goMPTCP, v, "descriptor %d, the process's own MPTCP socket", fd)
	}
	goWins := goDefault
	goWins.UserTimeout = policy.UserTimeout
	n := 0
	for _, s := range subflows(t, l) {
		if s.Cgroup == l.list()[0].CgroupID {
			n++
			assert.Equal(t, goWins, subflowValues(s), "the subflow %v -> %v", s.Local, s.Remote)
		}
	}
	assert.Equal(t, 2, n, "subflows in the cgroup")
	assert.Equal(t, enforce.Counts{Dialled: 1, Accepted: 1}, l.list()[0].Counts, "no setsockopt call kept from changing the policy's values")
}

// subflows reads every TCP socket in the network namespaces of the lab's
// cgroup with bpfsock's dump iterator, which needs a policy in force, and
// returns the established ones by their local and remote addresses.
func subflows(t *testing.T, l *lab) map[[2]string]bpfsock.Socket {
	t.Helper()
	out := map[[2]string]bpfsock.Socket{}
	for _, ss := range l.dump() {
		for _, s := range ss {
			if s.State == tcpEstablished {
				out[[2]string{s.Local.String(), s.Remote.String()}] = s
			}
		}
	}
	return out
}

// subflowValues is what the dump iterator read of a socket.
func subflowValues(s bpfsock.Socket) sockopts.Values {
	return sockopts.Values{KeepAlive: s.KeepAlive, Idle: s.Idle, Interval: s.Interval, Count: s.Count, UserTimeout: s.UserTimeout}
}

// subflowOf returns the subflow with the addresses of the MPTCP socket
// local -> remote: its first one.
func subflowOf(t *testing.T, l *lab, local, remote netip.AddrPort) sockopts.Values {
	t.Helper()
	s, ok := subflows(t, l)[[2]string{local.String(), remote.String()}]
	require.True(t, ok, "no subflow %v -> %v", local, remote)
	return subflowValues(s)
}
