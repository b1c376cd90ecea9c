package enforce_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/cgrouptest"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// A policy covers the cgroups below its own, new connections and existing
// ones; where a sub-cgroup has a policy of its own, the nearer one wins,
// and once it ends the outer one covers the sub-cgroup's new connections.
func TestSubCgroups(t *testing.T) {
	l := newLab(t)
	child := cgrouptest.Sub(t, l.cgroup, "child")
	grandchild := cgrouptest.Sub(t, child, "grandchild")
	inChild := startConns(t, child, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	inGrand := startConns(t, grandchild, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	oldChild, oldGrand := inChild.dial(0, 1), inGrand.dial(0, 1)

	outer := keepalive.Config{Idle: 30 * time.Second}
	res := l.enforce(enforce.Options{Config: outer})
	assert.Len(t, res.Existing, 4, "both ends in the child and in the grandchild: %v", res.Existing)
	inChild.assertPairs(oldChild, with(bare(t), outer), "existing, in the child")
	inGrand.assertPairs(oldGrand, with(bare(t), outer), "existing, in the grandchild")
	inGrand.assertPairs(inGrand.dial(0, 1), with(bare(t), outer), "new, in the grandchild")

	// A policy of the child's own: nearer to the child's and the
	// grandchild's connections, which it sets, existing and new.
	inner := keepalive.Config{Idle: 40 * time.Second, Count: 3}
	res = l.enforce(enforce.Options{Cgroup: child, Config: inner})
	assert.Len(t, res.Existing, 6, "both ends of three connections: %v", res.Existing)
	inChild.assertPairs(oldChild, with(bare(t), inner), "existing, in the child, after its own policy")
	newGrand := inGrand.dial(0, 1)
	inGrand.assertPairs(newGrand, with(bare(t), inner), "new, in the grandchild, after the child's policy")
	assert.Len(t, l.list(), 2)

	// The outer policy again: it leaves the child's connections to the
	// child's policy.
	res = l.enforce(enforce.Options{Config: outer})
	assert.Empty(t, res.Existing)
	inGrand.assertPairs(newGrand, with(bare(t), inner), "the outer policy replaced")
	inChild.assertPairs(inChild.dial(0, 1), with(bare(t), inner), "new in the child, with both policies")
	ps := l.list()
	require.Len(t, ps, 2)
	assert.Equal(t, l.cgroup, ps[0].Cgroup)
	assert.Equal(t, uint64(8+2), ps[0].Counts.Nearer, "left to the child's policy: both ends of 4 existing connections by the iterator, of 1 new one by sock_ops: %+v", ps[0].Counts)

	// The child's policy ends: its connections keep its values, new ones
	// get the outer policy's.
	_, err := enforce.Remove(context.Background(), l.bpffs, child)
	require.NoError(t, err)
	inGrand.assertPairs(newGrand, with(bare(t), inner), "set by the child's policy, which ended")
	inGrand.assertPairs(inGrand.dial(0, 1), with(bare(t), outer), "new, after the child's policy ended")
}

// Policies on a cgroup that is then removed: the kernel detaches the
// programs; List says so, and Remove, given the path, cleans up. A cgroup
// made again at that path is another cgroup: its own policy is removed
// first.
func TestCgroupRemoved(t *testing.T) {
	l := newLab(t)
	gone := cgrouptest.Sub(t, l.cgroup, "gone")
	l.enforce(enforce.Options{Cgroup: gone, Config: policy})
	require.NoError(t, os.Remove(gone))
	require.Eventually(t, func() bool {
		ps := l.list()
		return len(ps) == 1 && !ps[0].Attached
	}, 10*time.Second, 10*time.Millisecond, "the policy's links detached once the cgroup is gone")

	again := cgrouptest.Sub(t, l.cgroup, "gone")
	l.enforce(enforce.Options{Cgroup: again, Config: keepalive.Config{Idle: time.Minute}})
	ps := l.list()
	require.Len(t, ps, 2)
	p, err := enforce.Remove(context.Background(), l.bpffs, gone)
	require.NoError(t, err)
	assert.True(t, p.Attached, "the policy of the cgroup there now")
	assert.Equal(t, keepalive.Config{Idle: time.Minute}, p.Config)
	p, err = enforce.Remove(context.Background(), l.bpffs, gone)
	require.NoError(t, err)
	assert.False(t, p.Attached, "then the one left by the cgroup removed")
	assert.Equal(t, policy, p.Config)
	l.assertNothingLeft()
}

// Many enforce calls racing on one cgroup leave one policy: one program
// on each hook, one policy listed, and new connections get its Config.
func TestRace(t *testing.T) {
	l := newLab(t)
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = enforce.Enforce(context.Background(), enforce.Options{
				Cgroup: l.cgroup, BPFFS: l.bpffs,
				Config: keepalive.Config{Idle: time.Duration(100+i) * time.Second},
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		assert.NoError(t, err, "enforce %d", i)
	}
	assert.Len(t, attached(t, l.cgroup, ebpf.AttachCGroupSockOps), 1)
	assert.Len(t, attached(t, l.cgroup, ebpf.AttachCGroupSetsockopt), 1)
	ps := l.list()
	require.Len(t, ps, 1)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	c.assertPairs(c.dial(0, 1), with(bare(t), ps[0].Config), "the policy listed")
	objs, err := enforce.LoadedObjects()
	require.NoError(t, err)
	assert.Len(t, objs.Programs, len(l.before.Programs)+2, "%v", objs)
	assert.Len(t, objs.Links, len(l.before.Links)+2, "%v", objs)
}

// Paths that are not cgroup v2 directories are refused, and nothing is
// loaded or pinned.
func TestNotCgroup2(t *testing.T) {
	l := newLab(t)
	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	cases := map[string]string{
		t.TempDir():                             "is not in a cgroup filesystem",
		file:                                    "is not a directory",
		filepath.Join(l.cgroup, "missing"):      "no such directory",
		filepath.Join(l.cgroup, "cgroup.procs"): "is not a directory",
	}
	if v1, ok := cgrouptest.V1(); ok {
		cases[v1] = "is a cgroup v1 directory"
	}
	for path, want := range cases {
		_, err := enforce.Enforce(context.Background(), enforce.Options{Cgroup: path, Config: policy, BPFFS: l.bpffs})
		require.ErrorIs(t, err, enforce.ErrNotCgroup2, path)
		assert.Contains(t, err.Error(), want)
		assert.Contains(t, err.Error(), "cgroup v2 is mounted at ")
		l.assertNothingLeft()
	}
}

// A process without the capabilities is refused with an error that names
// those it lacks, and nothing is loaded or pinned.
func TestNoCapabilities(t *testing.T) {
	l := newLab(t)
	o := enforce.Options{Cgroup: l.cgroup, Config: policy, BPFFS: l.bpffs}
	for _, tc := range []struct {
		drop string
		want []string
	}{
		{"-all", []string{"lacks CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON (or CAP_SYS_ADMIN, which stands for CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)", "permission denied"}},
		{"-sys_admin,-net_admin", []string{"lacks CAP_NET_ADMIN (or CAP_SYS_ADMIN, which stands for"}},
	} {
		out, code := enforceAs(t, tc.drop, o)
		assert.Equal(t, 1, code, out)
		for _, w := range tc.want {
			assert.Contains(t, out, w, "dropped %s", tc.drop)
		}
		l.assertNothingLeft()
	}
	// With every capability, the same Options work.
	out, code := enforceAs(t, "", o)
	assert.Equal(t, 0, code, out)
}

// The connections of a process in a network namespace of its own, in the
// cgroup, are set too: the iterator runs in each namespace.
func TestNetworkNamespace(t *testing.T) {
	l := newLab(t)
	inNS := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}, LoopbackUp: true}, unix.CLONE_NEWNET)
	here := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	oldNS, oldHere := inNS.dial(0, 2), here.dial(0, 1)
	res := l.enforce(enforce.Options{Config: policy})
	assert.Equal(t, 2, res.Namespaces)
	assert.Len(t, res.Existing, 6)
	netns := map[uint64]int{}
	for _, e := range res.Existing {
		netns[e.Netns]++
	}
	assert.Len(t, netns, 2, "connections in two namespaces: %v", netns)
	inNS.assertPairs(oldNS, with(bare(t), policy), fmt.Sprintf("existing, in namespace of pid %d", inNS.pid))
	here.assertPairs(oldHere, with(bare(t), policy), "existing, here")
	inNS.assertPairs(inNS.dial(0, 1), with(bare(t), policy), "new, in the other namespace")
}
