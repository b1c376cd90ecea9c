package audit_test

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
)

// nobody is the user the permission test drops to.
const nobody = 65534

// TestPermission runs audit and apply as an unprivileged user (nobody,
// without CAP_SYS_PTRACE) against a process of root's and one of its own,
// all started by the test. Apply on root's process fails with an
// explanation and changes nothing; audit still lists root's connections,
// with the owner unknown and what the kernel shows; audit reads the values
// of the user's own process without any privilege.
//
// Not proven here: Yama's ptrace_scope (this kernel has no Yama), under
// which /proc/PID/fd can be listed but pidfd_getfd is refused; apply's
// error then names the scope.
func TestPermission(t *testing.T) {
	needRoot(t, "starts processes as another user")
	target := startHold(t, 2, "off", false, nil)
	own := startHold(t, 1, "off", false, &syscall.Credential{Uid: nobody, Gid: nobody})
	probe, err := testproc.Start(t, testproc.Opts{Env: []string{
		helperEnv + "=probe",
		fmt.Sprintf("%s=%d,%d", probeTargetEnv, target.PID, target.Port),
		fmt.Sprintf("%s=%d,%d", probeOwnEnv, own.PID, own.Port),
	}, Cred: &syscall.Credential{Uid: nobody, Gid: nobody}})
	require.NoError(t, err)
	out, err := probe.Stdout.ReadBytes('\n')
	require.NoError(t, err, "probe exited before it reported")
	var r probeResult
	require.NoError(t, json.Unmarshal(out, &r), "probe said %s", out)
	t.Logf("apply as uid %d: %s", r.UID, r.ApplyErr)
	require.Equal(t, nobody, r.UID)

	assert.True(t, r.ApplyIsPerm, "errors.Is(err, os.ErrPermission): %s", r.ApplyErr)
	assert.True(t, r.ApplyPermError, "a *audit.PermissionError: %s", r.ApplyErr)
	for _, w := range []string{
		fmt.Sprintf("no permission to inspect process %d", target.PID),
		"ptrace read access",
		"run as the user that owns it (uid 0)",
		"CAP_SYS_PTRACE",
		fmt.Sprintf("this process runs as uid %d without CAP_SYS_PTRACE", nobody),
	} {
		assert.Contains(t, r.ApplyErr, w)
	}
	for _, fd := range ownedFDs(t, target.PID) {
		assert.False(t, readFrom(t, target.PID, fd).KeepAlive, "fd %d of root's process after the refused apply", fd)
	}

	assert.True(t, r.FilterIsPerm, "audit -pid of root's process: %s", r.FilterErr)

	// The processes that could not be searched are named, root's helper
	// among them, each with why; kernel threads, which hold no
	// descriptors, are left out.
	found := false
	for _, u := range r.Unreadable {
		assert.NotEqual(t, 2, u.PID, "kthreadd, a kernel thread")
		assert.NotEmpty(t, u.Why, "pid %d", u.PID)
		if u.PID == target.PID {
			found = true
			assert.Equal(t, "audit.test", u.Command)
			assert.Equal(t, fmt.Sprintf("open /proc/%d/fd", target.PID), u.Op)
			assert.Contains(t, u.Why, "run as the user that owns it (uid 0)")
		}
	}
	assert.True(t, found, "root's helper, pid %d, is named among the processes not searched: %+v", target.PID, r.Unreadable)
	assert.Equal(t, 4, r.TargetConns, "root's two connections, both ends, are still listed")
	for i := range r.TargetPIDs {
		assert.Zero(t, r.TargetPIDs[i], "owner unknown")
		assert.Equal(t, "kernel", r.TargetSources[i], "keepalive off as sock_diag shows it")
	}

	assert.Equal(t, 2, r.OwnPortConns, "the user's own connection, both ends, on its port")
	assert.Zero(t, r.OwnPortUnreadable, "every owner found: the processes not searched hold none of them")

	assert.Equal(t, 2, r.OwnConns, "the user's own connection, both ends")
	assert.Equal(t, []string{"socket", "socket"}, r.OwnSources, "read from the sockets without privilege")
	assert.Empty(t, r.OwnErrs)
}

// ownedFDs lists the descriptors of process pid that are sockets.
func ownedFDs(t *testing.T, pid int) []int {
	t.Helper()
	fds, err := sockopts.SocketFDs(pid)
	require.NoError(t, err)
	return fds
}
