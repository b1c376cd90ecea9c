package enforce_test

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// The dump iterator of the BPF layer reads every socket's values and the
// record a policy left on it, without ptrace: its values match getsockopt
// on the same socket, and the record names the policy and how it reached
// the socket. A connection outside the cgroup has none.
func TestDumpIterator(t *testing.T) {
	l := newLab(t)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0", "[::1]:0"}}, 0)
	existing := c.dial(0, 1)
	res := l.enforce(enforce.Options{Config: policy})
	fresh := c.dial(1, 1)
	// A connection of the test's own, outside the cgroup.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	outside, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer outside.Close()
	accepted, err := ln.Accept()
	require.NoError(t, err)
	defer accepted.Close()

	start := time.Now()
	own := l.dump()[0]
	t.Logf("dumped %d sockets in %v", len(own), time.Since(start))
	byAddrs := map[[2]netip.AddrPort]bpfsock.Socket{}
	for _, s := range own {
		byAddrs[[2]netip.AddrPort{s.Local, s.Remote}] = s
	}
	find := func(local, remote string) bpfsock.Socket {
		t.Helper()
		s, ok := byAddrs[[2]netip.AddrPort{netip.MustParseAddrPort(local), netip.MustParseAddrPort(remote)}]
		require.True(t, ok, "no socket %s -> %s in the dump", local, remote)
		return s
	}
	valuesOf := func(s bpfsock.Socket) sockopts.Values {
		return sockopts.Values{KeepAlive: s.KeepAlive, Idle: s.Idle, Interval: s.Interval, Count: s.Count, UserTimeout: s.UserTimeout}
	}
	for _, tc := range []struct {
		p   pair
		how [2]bpfsock.How
	}{
		{existing[0], [2]bpfsock.How{bpfsock.Existing, bpfsock.Existing}},
		{fresh[0], [2]bpfsock.How{bpfsock.Dialled, bpfsock.Accepted}},
	} {
		for i, e := range []sock{tc.p.Dialled, tc.p.Accepted} {
			s := find(e.Local, e.Remote)
			assert.Equal(t, c.values(e), valuesOf(s), "%s -> %s: the dump against getsockopt", e.Local, e.Remote)
			assert.Zero(t, s.Errs)
			assert.Equal(t, res.Policy.CgroupID, s.Cgroup, "the socket's cgroup")
			assert.Equal(t, uint8(1), s.State, "ESTABLISHED")
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", c.pid, e.FD))
			require.NoError(t, err)
			assert.Equal(t, fmt.Sprintf("socket:[%d]", s.Inode), link, "the inode")
			require.True(t, s.HasRecord, "%s -> %s", e.Local, e.Remote)
			assert.Equal(t, bpfsock.Record{Cgroup: res.Policy.CgroupID, Policy: res.Policy.ID, Set: bpfsock.AllOptions, How: tc.how[i]}, s.Record)
		}
	}
	s := find(outside.LocalAddr().String(), outside.RemoteAddr().String())
	assert.False(t, s.HasRecord, "a connection outside the cgroup")
	assert.NotEqual(t, res.Policy.CgroupID, s.Cgroup)
	want, err := sockopts.Read(outside.(*net.TCPConn))
	require.NoError(t, err)
	assert.Equal(t, want, valuesOf(s))
}
