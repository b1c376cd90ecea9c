package enforce_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/cgrouptest"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// Enforce with no bpffs mounted, and the cgroup tree reached through a
// read-only bind mount, as the Kubernetes DaemonSet in ops/deploy has them
// (the host's cgroup tree at /host/sys/fs/cgroup, read-only; /sys/fs/bpf a
// directory where bpffs may not be mounted yet). A helper does it in a
// mount namespace of its own, where nothing is mounted on /sys/fs/bpf:
// Enforce mounts bpffs there and puts the policy in force, which sets the
// connections of a process in the cgroup, existing and new. The bpffs it
// mounted is its namespace's: when the helper ends, the namespace and its
// mounts go, and with them the pins that held the policy, which then ends
// by itself. So a container that runs enforce must see the host's bpffs
// (the DaemonSet mounts it from the host, with Bidirectional propagation,
// so that a bpffs mounted in the container is mounted on the host).
func TestBPFFSNotMounted(t *testing.T) {
	l := newLab(t)
	var host unix.Statfs_t
	hostErr := unix.Statfs("/sys/fs/bpf", &host)
	c := startConns(t, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
	old := c.dial(0, 1)

	root, err := cgrouptest.Mount()
	require.NoError(t, err)
	rel, err := filepath.Rel(root, l.cgroup)
	require.NoError(t, err)
	h, err := testproc.Start(t, testproc.Opts{
		Env:        []string{helperEnv + "=mountns", "ENFORCE_TEST_MOUNTNS=" + mustJSON(t, mountnsSpec{CgroupRoot: root, Cgroup: rel, Dir: t.TempDir(), Config: policy.String()})},
		Cloneflags: unix.CLONE_NEWNS,
	})
	require.NoError(t, err)
	line, err := h.Stdout.ReadBytes('\n')
	require.NoError(t, err, "the helper ended")
	var r mountnsResult
	require.NoError(t, json.Unmarshal(line, &r), "the helper said %q", line)
	require.Empty(t, r.Err)
	assert.False(t, r.MountedBefore, "nothing was mounted on /sys/fs/bpf in the helper's namespace")
	assert.True(t, r.MountedAfter, "enforce mounted bpffs on /sys/fs/bpf")
	assert.True(t, r.ReadOnly, "the cgroup tree was reached through a read-only mount")
	assert.Equal(t, "/sys/fs/bpf/keepalive/"+fmt.Sprintf("cgroup-%d", r.CgroupID), r.Pins)
	assert.Equal(t, 2, r.Existing, "both ends of the connection made before")

	want := with(bare(t), policy)
	c.assertPairs(old, want, "existing")
	c.assertPairs(c.dial(0, 1), want, "new")
	var now unix.Statfs_t
	nowErr := unix.Statfs("/sys/fs/bpf", &now)
	assert.Equal(t, hostErr, nowErr)
	assert.Equal(t, host.Type, now.Type, "/sys/fs/bpf of the test's own namespace is as it was")
	ps, err := enforce.List(context.Background(), l.bpffs)
	require.NoError(t, err)
	assert.Empty(t, ps, "the policy is pinned in the helper's bpffs, not in the test's")

	// The helper ends; its bpffs goes, and the policy with it.
	h.Stdin.Close()
	require.NoError(t, h.Cmd.Wait())
	l.assertNothingLeft()
	c.assertPairs(c.dial(0, 1), bare(t), "new, once the bpffs that held the policy is gone")
}

// mountnsSpec is what a mountns helper does.
type mountnsSpec struct {
	CgroupRoot string // where the cgroup v2 tree is mounted
	Cgroup     string // the cgroup, relative to CgroupRoot
	Dir        string // an empty directory of the test's, for the helper's mounts
	Config     string
}

// mountnsResult is what a mountns helper reports.
type mountnsResult struct {
	MountedBefore, MountedAfter bool // bpffs on /sys/fs/bpf
	ReadOnly                    bool // the cgroup tree's mount
	CgroupID                    uint64
	Pins                        string
	Existing                    int
	Err                         string
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// runMountns is a mountns helper, started in a mount namespace of its own:
// it makes every mount in it private, so that nothing it does reaches the
// test's namespace; unmounts whatever is mounted on /sys/fs/bpf; binds the
// cgroup tree read-only at DIR/host/sys/fs/cgroup; and calls Enforce on
// the cgroup through that mount, with the default bpffs. It prints a
// mountnsResult and waits for its standard input to close.
func runMountns() int {
	var spec mountnsSpec
	var r mountnsResult
	out := json.NewEncoder(os.Stdout)
	fail := func(err error) int {
		r.Err = err.Error()
		out.Encode(r)
		return 1
	}
	if err := json.Unmarshal([]byte(os.Getenv("ENFORCE_TEST_MOUNTNS")), &spec); err != nil {
		return fail(err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(fmt.Errorf("making the mounts private: %w", err))
	}
	isBPFFS := func() bool {
		var st unix.Statfs_t
		return unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC
	}
	for isBPFFS() {
		if err := unix.Unmount("/sys/fs/bpf", unix.MNT_DETACH); err != nil {
			return fail(fmt.Errorf("unmounting /sys/fs/bpf: %w", err))
		}
	}
	r.MountedBefore = isBPFFS()
	host := filepath.Join(spec.Dir, "host", "sys", "fs", "cgroup")
	if err := os.MkdirAll(host, 0o755); err != nil {
		return fail(err)
	}
	if err := unix.Mount(spec.CgroupRoot, host, "", unix.MS_BIND, ""); err != nil {
		return fail(fmt.Errorf("binding the cgroup tree: %w", err))
	}
	if err := unix.Mount("", host, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fail(fmt.Errorf("making the cgroup tree read-only: %w", err))
	}
	var st unix.Statfs_t
	r.ReadOnly = unix.Statfs(host, &st) == nil && st.Flags&unix.ST_RDONLY != 0
	cfg, err := keepalive.ParseConfig(spec.Config)
	if err != nil {
		return fail(err)
	}
	res, err := enforce.Enforce(context.Background(), enforce.Options{Cgroup: filepath.Join(host, spec.Cgroup), Config: cfg})
	if err != nil {
		return fail(err)
	}
	r.MountedAfter = isBPFFS()
	r.CgroupID, r.Pins, r.Existing = res.Policy.CgroupID, res.Policy.Pins, len(res.Existing)
	out.Encode(r)
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}
