package audit_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// TestAuditOtherProcess checks the values audit reads from a process the
// test started against the Config that process set and against
// getsockopt on the same sockets, and that reading them leaves the
// process's descriptors as they were.
func TestAuditOtherProcess(t *testing.T) {
	c := keepalive.Config{Idle: 33 * time.Second, Interval: 3 * time.Second, Count: 4}
	h := startHold(t, 3, c.String(), true, nil)
	flags := fdFlags(t, h.PID, h.Blocking)

	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}})
	require.NoError(t, err)
	require.Len(t, rep.Conns, 8, "3 pairs and the blocking pair, both ends in the helper")
	dialed := 0
	for _, got := range rep.Conns {
		assert.Equal(t, h.PID, got.PID)
		assert.Equal(t, "audit.test", got.Command)
		assert.Equal(t, audit.SourceSocket, got.Source)
		assert.Equal(t, readFrom(t, h.PID, got.FD), valuesOf(got), "fd %d: audit's values; want getsockopt's", got.FD)
		if got.Enabled {
			dialed++
			assert.Equal(t, c, got.Config, "fd %d: the Config the process set", got.FD)
		}
	}
	assert.Equal(t, 3, dialed, "the dialed ends have keepalive on, the accepted and the blocking one off")
	assert.Equal(t, flags, fdFlags(t, h.PID, h.Blocking), "file status flags of a blocking socket after the audit")
}

// TestApply sets a Config on the sockets of a process the test started,
// and checks each against getsockopt; the process's other descriptors and
// its blocking socket's mode stay as they were.
func TestApply(t *testing.T) {
	h := startHold(t, 3, "off", true, nil)
	want := keepalive.Config{Idle: 20 * time.Second, Interval: 4 * time.Second, Count: 2, UserTimeout: 30 * time.Second}
	flags := fdFlags(t, h.PID, h.Blocking)
	udpBefore := soKeepalive(t, h.PID, h.UDP)

	results, err := audit.Apply(context.Background(), h.PID, audit.Filter{Port: uint16(h.Port)}, want)
	require.NoError(t, err)
	require.Len(t, results, 8)
	for _, r := range results {
		require.NoError(t, r.Err, "fd %d", r.Before.FD)
		assert.NotContains(t, []int{h.UDP, h.Unix, h.Pipe}, r.Before.FD, "a non-TCP descriptor")
		assert.False(t, r.Before.Enabled, "fd %d before", r.Before.FD)
		assert.Equal(t, audit.SourceSocket, r.After.Source)
		assert.True(t, r.After.Enabled, "fd %d after", r.After.FD)
		assert.Equal(t, want, r.After.Config, "fd %d: read back", r.After.FD)
		assert.Equal(t, sockopts.Values{KeepAlive: true, Idle: want.Idle, Interval: want.Interval, Count: want.Count, UserTimeout: want.UserTimeout},
			readFrom(t, h.PID, r.After.FD), "fd %d: getsockopt after apply", r.After.FD)
	}
	assert.Equal(t, flags, fdFlags(t, h.PID, h.Blocking), "file status flags of a blocking socket after apply")
	assert.Equal(t, udpBefore, soKeepalive(t, h.PID, h.UDP), "SO_KEEPALIVE of the UDP socket")
}

// TestApplySelects checks that apply changes only the connections its
// filter selects.
func TestApplySelects(t *testing.T) {
	h := startHold(t, 3, "off", false, nil)
	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}})
	require.NoError(t, err)
	require.Len(t, rep.Conns, 6)
	// A client's ephemeral port names one pair: its dialed and its
	// accepted end.
	var port uint16
	for _, c := range rep.Conns {
		if c.Remote.Port() == uint16(h.Port) {
			port = c.Local.Port()
			break
		}
	}
	require.NotZero(t, port)
	c := keepalive.Config{Idle: 9 * time.Second}

	results, err := audit.Apply(context.Background(), h.PID, audit.Filter{Remote: netip.MustParsePrefix("10.0.0.0/8")}, c)
	require.NoError(t, err)
	assert.Empty(t, results, "no remote in 10.0.0.0/8")

	results, err = audit.Apply(context.Background(), h.PID, audit.Filter{Port: port}, c)
	require.NoError(t, err)
	require.Len(t, results, 2)
	changed := map[int]bool{}
	for _, r := range results {
		require.NoError(t, r.Err)
		changed[r.After.FD] = true
	}
	for _, conn := range rep.Conns {
		v := readFrom(t, h.PID, conn.FD)
		assert.Equal(t, changed[conn.FD], v.KeepAlive, "fd %d (%v): keepalive", conn.FD, conn.Local)
		if changed[conn.FD] {
			assert.Equal(t, c.Idle, v.Idle, "fd %d", conn.FD)
		}
	}
}

// TestApplyInvalidConfig checks that an invalid Config changes nothing.
func TestApplyInvalidConfig(t *testing.T) {
	h := startHold(t, 1, "off", false, nil)
	for _, c := range []keepalive.Config{
		{Idle: 1500 * time.Millisecond},
		{Idle: 10 * time.Second, Count: 200},
		{Interval: -time.Second},
	} {
		results, err := audit.Apply(context.Background(), h.PID, audit.Filter{}, c)
		assert.Error(t, err, "%+v", c)
		assert.Contains(t, err.Error(), "keepalive:", "the library's validation error")
		assert.Nil(t, results)
	}
	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}})
	require.NoError(t, err)
	require.Len(t, rep.Conns, 2)
	for _, conn := range rep.Conns {
		assert.False(t, readFrom(t, h.PID, conn.FD).KeepAlive, "fd %d untouched", conn.FD)
	}
}

// TestApplyCancel checks that a cancelled apply changes nothing more and
// leaves no descriptor open.
func TestApplyCancel(t *testing.T) {
	h := startHold(t, 2, "off", false, nil)
	before := openFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	results, err := audit.Apply(ctx, h.PID, audit.Filter{}, keepalive.Config{Idle: 5 * time.Second})
	assert.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, results)
	assert.Equal(t, before, openFDs(t))
}

// soKeepalive reads SO_KEEPALIVE of process pid's descriptor fd.
func soKeepalive(t *testing.T, pid, fd int) int {
	t.Helper()
	f := dupFrom(t, pid, fd)
	rc, err := f.SyscallConn()
	require.NoError(t, err)
	var v int
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_KEEPALIVE) }))
	require.NoError(t, gerr)
	return v
}
