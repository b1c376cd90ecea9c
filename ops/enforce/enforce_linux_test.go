package enforce_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// policy is the Config most tests put in force: every field set, none of
// them a system default.
var policy = keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 59 * time.Second}

func TestNewConnections(t *testing.T) {
	l := newLab(t)
	res := l.enforce(enforce.Options{Config: policy})
	assert.Nil(t, res.Replaced)
	assert.Empty(t, res.Existing)

	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0", "[::1]:0"}}, 0)
	v4, v6 := c.dial(0, 3), c.dial(1, 2)
	want := with(bare(t), policy)
	c.assertPairs(v4, want, "IPv4")
	c.assertPairs(v6, want, "IPv6")

	ps := l.list()
	require.Len(t, ps, 1)
	p := ps[0]
	assert.Equal(t, l.cgroup, p.Cgroup)
	assert.Equal(t, policy, p.Config)
	assert.Equal(t, enforce.PolicyWins, p.Wins)
	assert.True(t, p.Attached)
	assert.Equal(t, enforce.Counts{Dialled: 5, Accepted: 5}, p.Counts)
	assert.WithinDuration(t, time.Now(), p.Since, time.Minute)
}

func TestExistingConnections(t *testing.T) {
	l := newLab(t)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0", "[::1]:0"}}, 0)
	v4, v6 := c.dial(0, 2), c.dial(1, 1)
	c.assertPairs(append(v4, v6...), bare(t), "before the policy")

	res := l.enforce(enforce.Options{Config: policy})
	want := with(bare(t), policy)
	c.assertPairs(append(v4, v6...), want, "after the policy")
	assert.Len(t, res.Existing, 6, "both ends of 3 connections: %v", res.Existing)
	for _, e := range res.Existing {
		assert.Equal(t, enforce.FieldKeepAlive|enforce.FieldIdle|enforce.FieldInterval|enforce.FieldCount|enforce.FieldUserTimeout, e.Set, "%v", e)
		assert.Zero(t, e.Left)
	}
	assert.Equal(t, uint64(6), res.Policy.Counts.Existing)
	assert.GreaterOrEqual(t, res.Namespaces, 1)
}

// Thousands of existing connections: the iterator's output fills the
// kernel's buffer many times over, and the kernel then runs the program
// again on the connection whose report did not fit; every connection is
// set and reported once, and counted once.
func TestExistingMany(t *testing.T) {
	l := newLab(t)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	const n = 2000
	pairs := c.dial(0, n)
	res := l.enforce(enforce.Options{Config: policy})
	assert.Equal(t, 2*n, len(res.Existing), "connection ends reported")
	assert.Equal(t, uint64(2*n), res.Policy.Counts.Existing)
	seen := map[string]bool{}
	for _, e := range res.Existing {
		seen[e.Local.String()+" "+e.Remote.String()] = true
	}
	want := with(bare(t), policy)
	for i, p := range pairs {
		assert.True(t, seen[p.Dialled.Local+" "+p.Dialled.Remote], "pair %d's dialled end reported", i)
		assert.True(t, seen[p.Accepted.Local+" "+p.Accepted.Remote], "pair %d's accepted end reported", i)
		if i%100 == 0 {
			c.assertPairs(pairs[i:i+1], want, fmt.Sprintf("pair %d", i))
		}
	}
}

func TestReplace(t *testing.T) {
	l := newLab(t)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	first := keepalive.Config{Idle: 100 * time.Second}
	l.enforce(enforce.Options{Config: first})
	old := c.dial(0, 1)
	c.assertPairs(old, with(bare(t), first), "under the first policy")
	ops := attached(t, l.cgroup, ebpf.AttachCGroupSockOps)
	require.Len(t, ops, 1)

	second := keepalive.Config{Idle: 200 * time.Second, Count: 2}
	res := l.enforce(enforce.Options{Config: second, Wins: enforce.ProgramWins})
	require.NotNil(t, res.Replaced)
	assert.Equal(t, first, res.Replaced.Config)
	assert.Equal(t, uint64(1), res.Replaced.Counts.Dialled)

	now := attached(t, l.cgroup, ebpf.AttachCGroupSockOps)
	require.Len(t, now, 1, "one sock_ops program, not two")
	assert.NotEqual(t, ops, now, "the program was replaced")
	assert.Len(t, attached(t, l.cgroup, ebpf.AttachCGroupSetsockopt), 1)
	ps := l.list()
	require.Len(t, ps, 1)
	assert.Equal(t, second, ps[0].Config)
	assert.Equal(t, enforce.ProgramWins, ps[0].Wins)

	// The connection the first policy set gets the second's values, and a
	// new one only the second's.
	c.assertPairs(old, with(bare(t), second), "set by the first policy, then the second")
	c.assertPairs(c.dial(0, 1), with(bare(t), second), "new")
}

func TestRemove(t *testing.T) {
	l := newLab(t)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	l.enforce(enforce.Options{Config: policy})
	set := c.dial(0, 2)
	inForce, err := enforce.LoadedObjects()
	require.NoError(t, err)
	// Three programs were loaded, the iterator is gone; four maps: two
	// shared and two of the policy's; two links.
	assert.Len(t, inForce.Programs, len(l.before.Programs)+2, "%v", inForce)
	assert.Len(t, inForce.Maps, len(l.before.Maps)+4, "%v", inForce)
	assert.Len(t, inForce.Links, len(l.before.Links)+2, "%v", inForce)

	p, err := enforce.Remove(context.Background(), l.bpffs, l.cgroup)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), p.Counts.Dialled)
	assert.Empty(t, attached(t, l.cgroup, ebpf.AttachCGroupSockOps))
	assert.Empty(t, attached(t, l.cgroup, ebpf.AttachCGroupSetsockopt))
	l.assertNothingLeft()

	// What the policy set stays; what comes after is bare.
	c.assertPairs(set, with(bare(t), policy), "set before the policy ended")
	c.assertPairs(c.dial(0, 2), bare(t), "after the policy ended")

	_, err = enforce.Remove(context.Background(), l.bpffs, l.cgroup)
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestInvalidConfig(t *testing.T) {
	l := newLab(t)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	pairs := c.dial(0, 1)
	for _, bad := range []keepalive.Config{
		{Idle: 1500 * time.Millisecond},
		{Count: 128},
		{Interval: -time.Second},
		{UserTimeout: time.Microsecond},
	} {
		_, err := enforce.Enforce(context.Background(), enforce.Options{Cgroup: l.cgroup, Config: bad, BPFFS: l.bpffs})
		var verr *keepalive.ValidationError
		assert.ErrorAs(t, err, &verr, "%+v", bad)
		l.assertNothingLeft()
	}
	c.assertPairs(pairs, bare(t), "after the refused policies")
	assert.Empty(t, attached(t, l.cgroup, ebpf.AttachCGroupSockOps))
}
