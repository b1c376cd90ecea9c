// Package policytest gives the tests of the operations code that read
// policies (audit, metrics) policies of their own: a bpffs of the test's,
// cgroups whose policies go before they do, and at the end a check that
// no BPF object of the project the test made is left.
package policytest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/cgrouptest"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// Lab is a bpffs of the test's own, under the BPF tests' lock.
type Lab struct {
	t testing.TB
	// BPFFS is where the lab's bpffs is mounted.
	BPFFS  string
	before enforce.Objects
}

// objectsFreed is how long the kernel may take to free a program's maps
// once the program is gone: they are put after an RCU grace period, which
// takes longer on a loaded machine.
const objectsFreed = 20 * time.Second

// New makes a Lab; the test is skipped (failed in CI) without root. At
// cleanup, once the lab's cgroups and their policies are gone, no object
// of the project that was not there before may be left, nor the project's
// directory in the bpffs.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		cgrouptest.Skip(t, "policies need root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
	}
	cgrouptest.Lock(t)
	dir := t.TempDir()
	require.NoError(t, unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"))
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	l := &Lab{t: t, BPFFS: dir}
	var err error
	l.before, err = enforce.LoadedObjects()
	require.NoError(t, err)
	t.Cleanup(func() {
		var now enforce.Objects
		ok := assert.Eventually(t, func() bool {
			now, err = enforce.LoadedObjects()
			return err == nil && within(now, l.before)
		}, objectsFreed, 10*time.Millisecond)
		if !ok {
			t.Errorf("the project's BPF objects: before %v; now %v", l.before, now)
		}
		_, err = os.Stat(filepath.Join(l.BPFFS, "keepalive"))
		assert.ErrorIs(t, err, os.ErrNotExist, "the project's directory is left in bpffs")
	})
	return l
}

// within reports whether every object of now was there before: ids are
// not reused soon, and objects of before may have gone since (those of a
// test that does not take the lock).
func within(now, before enforce.Objects) bool {
	for _, s := range [][2][]uint32{{now.Programs, before.Programs}, {now.Maps, before.Maps}, {now.Links, before.Links}} {
		for _, id := range s[0] {
			if !slices.Contains(s[1], id) {
				return false
			}
		}
	}
	return true
}

// Cgroup makes a cgroup for the test, and at cleanup removes the policy
// on it, if any, before the cgroup goes.
func (l *Lab) Cgroup() string {
	l.t.Helper()
	cg := cgrouptest.New(l.t)
	l.t.Cleanup(func() {
		_, err := enforce.Remove(context.Background(), l.BPFFS, cg)
		if !errors.Is(err, os.ErrNotExist) {
			assert.NoError(l.t, err, "removing the policy on %s", cg)
		}
	})
	return cg
}

// Enforce puts a policy of c and f on cgroup, pinned in the lab's bpffs.
func (l *Lab) Enforce(cgroup string, c keepalive.Config, f enforce.Filter) enforce.Policy {
	l.t.Helper()
	res, err := enforce.Enforce(context.Background(), enforce.Options{Cgroup: cgroup, Config: c, Filter: f, BPFFS: l.BPFFS})
	require.NoError(l.t, err)
	return res.Policy
}
