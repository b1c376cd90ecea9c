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
func TestAuditOtherProcess(t *testing.T) { forMethods(t, testAuditOtherProcess) }

func testAuditOtherProcess(t *testing.T, m audit.Method) {
	c := keepalive.Config{Idle: 33 * time.Second, Interval: 3 * time.Second, Count: 4}
	h := startHold(t, 3, c.String(), true, nil)
	flags := fdFlags(t, h.PID, h.Blocking)

	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}, Method: m})
	require.NoError(t, err)
	require.Len(t, rep.Conns, 8, "3 pairs and the blocking pair, both ends in the helper")
	dialed := 0
	for _, got := range rep.Conns {
		assert.Equal(t, h.PID, got.PID)
		assert.Equal(t, "audit.test", got.Command)
		assert.Equal(t, audit.SourceSocket, got.Source)
		assert.Equal(t, m, got.Method)
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
func TestApply(t *testing.T) { forMethods(t, testApply) }

func testApply(t *testing.T, m audit.Method) {
	h := startHold(t, 3, "off", true, nil)
	want := keepalive.Config{Idle: 20 * time.Second, Interval: 4 * time.Second, Count: 2, UserTimeout: 30 * time.Second}
	flags := fdFlags(t, h.PID, h.Blocking)
	udpBefore := soKeepalive(t, h.PID, h.UDP)

	results, err := audit.Apply(context.Background(), h.PID, audit.Filter{Port: uint16(h.Port)}, audit.Change{Config: want, Fields: audit.AllFields, Method: m})
	require.NoError(t, err)
	require.Len(t, results, 8)
	for _, r := range results {
		require.NoError(t, r.Err, "fd %d", r.Before.FD)
		assert.NotContains(t, []int{h.UDP, h.Unix, h.Pipe}, r.Before.FD, "a non-TCP descriptor")
		assert.False(t, r.Before.Enabled, "fd %d before", r.Before.FD)
		assert.Equal(t, audit.SourceSocket, r.After.Source)
		assert.Equal(t, m, r.After.Method)
		assert.NoError(t, r.BPFError)
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
func TestApplySelects(t *testing.T) { forMethods(t, testApplySelects) }

func testApplySelects(t *testing.T, m audit.Method) {
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
	c := audit.Change{Config: keepalive.Config{Idle: 9 * time.Second}, Fields: audit.FieldKeepAlive | audit.FieldIdle, Method: m}

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
			assert.Equal(t, c.Config.Idle, v.Idle, "fd %d", conn.FD)
		}
	}
}

// TestApplyChange checks that apply sets the fields a Change names and
// leaves every other one as each socket has it, on a process the test
// started whose dialed ends hold values of their own, a user timeout
// included, and whose accepted ends have keepalive off. Every field of
// every socket is read back with the tests' own getsockopt.
func TestApplyChange(t *testing.T) { forMethods(t, testApplyChange) }

func testApplyChange(t *testing.T, m audit.Method) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	const s = time.Second
	own := keepalive.Config{Idle: 33 * s, Interval: 3 * s, Count: 4, UserTimeout: 21 * s}
	off := sockopts.Values{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count}
	for _, tt := range []struct {
		name            string
		change          audit.Change
		dialed, accepts sockopts.Values // after
	}{
		{"idle", audit.Change{Config: keepalive.Config{Idle: 50 * s}, Fields: audit.FieldKeepAlive | audit.FieldIdle},
			sockopts.Values{KeepAlive: true, Idle: 50 * s, Interval: 3 * s, Count: 4, UserTimeout: 21 * s},
			sockopts.Values{KeepAlive: true, Idle: 50 * s, Interval: sys.Interval, Count: sys.Count}},
		{"idle without keepalive", audit.Change{Config: keepalive.Config{Idle: 50 * s}, Fields: audit.FieldIdle},
			sockopts.Values{KeepAlive: true, Idle: 50 * s, Interval: 3 * s, Count: 4, UserTimeout: 21 * s},
			sockopts.Values{Idle: 50 * s, Interval: sys.Interval, Count: sys.Count}},
		{"user timeout removed", audit.Change{Fields: audit.FieldUserTimeout},
			sockopts.Values{KeepAlive: true, Idle: 33 * s, Interval: 3 * s, Count: 4},
			off},
		{"user timeout set", audit.Change{Config: keepalive.Config{UserTimeout: 9 * s}, Fields: audit.FieldUserTimeout},
			sockopts.Values{KeepAlive: true, Idle: 33 * s, Interval: 3 * s, Count: 4, UserTimeout: 9 * s},
			sockopts.Values{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count, UserTimeout: 9 * s}},
		{"defaults put back", audit.Change{Fields: audit.FieldInterval | audit.FieldCount},
			sockopts.Values{KeepAlive: true, Idle: 33 * s, Interval: sys.Interval, Count: sys.Count, UserTimeout: 21 * s},
			off},
		{"keepalive off", audit.Change{Config: keepalive.Config{Off: true}, Fields: audit.FieldKeepAlive},
			sockopts.Values{Idle: 33 * s, Interval: 3 * s, Count: 4, UserTimeout: 21 * s},
			off},
		{"all fields", audit.Change{Config: keepalive.Config{Idle: 7 * s}, Fields: audit.AllFields},
			sockopts.Values{KeepAlive: true, Idle: 7 * s, Interval: sys.Interval, Count: sys.Count},
			sockopts.Values{KeepAlive: true, Idle: 7 * s, Interval: sys.Interval, Count: sys.Count}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := startHold(t, 2, own.String(), false, nil)
			rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}})
			require.NoError(t, err)
			require.Len(t, rep.Conns, 4)
			before := map[int]sockopts.Values{}
			for _, c := range rep.Conns {
				before[c.FD] = readFrom(t, h.PID, c.FD)
			}

			tt.change.Method = m
			results, err := audit.Apply(context.Background(), h.PID, audit.Filter{}, tt.change)
			require.NoError(t, err)
			require.Len(t, results, 4)
			for _, r := range results {
				require.NoError(t, r.Err, "fd %d", r.Before.FD)
				want := tt.accepts
				if r.Before.Local.Port() != uint16(h.Port) {
					want = tt.dialed
				}
				assert.Equal(t, before[r.Before.FD], valuesOf(r.Before), "fd %d: Before", r.Before.FD)
				got := readFrom(t, h.PID, r.After.FD)
				assert.Equal(t, want, got, "fd %d (%v): getsockopt after apply", r.After.FD, r.After.Local)
				assert.Equal(t, got, valuesOf(r.After), "fd %d: After; want getsockopt's", r.After.FD)
				assert.Equal(t, m, r.After.Method, "fd %d", r.After.FD)
			}
		})
	}
}

// TestApplyChangeRefused checks that a Change that names no field, holds a
// value in a field it does not name, names unknown fields or holds an
// invalid Config is refused, and changes nothing.
func TestApplyChangeRefused(t *testing.T) {
	h := startHold(t, 1, "idle=33s,user-timeout=21s", false, nil)
	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}})
	require.NoError(t, err)
	before := map[int]sockopts.Values{}
	for _, c := range rep.Conns {
		before[c.FD] = readFrom(t, h.PID, c.FD)
	}
	for _, tt := range []struct {
		change audit.Change
		err    string
	}{
		{audit.Change{}, "audit: the change names no field: nothing to set"},
		{audit.Change{Config: keepalive.Config{Idle: 5 * time.Second}}, "audit: the change names no field: nothing to set"},
		{audit.Change{Config: keepalive.Config{Idle: 5 * time.Second}, Fields: audit.FieldKeepAlive}, "audit: the change's Config sets Idle, which its Fields do not name"},
		{audit.Change{Config: keepalive.Config{Off: true}, Fields: audit.FieldIdle}, "audit: the change's Config sets keepalive (Off), which its Fields do not name"},
		{audit.Change{Config: keepalive.Config{UserTimeout: time.Second}, Fields: audit.FieldCount}, "audit: the change's Config sets UserTimeout, which its Fields do not name"},
		{audit.Change{Fields: 1 << 6}, "audit: the change names unknown fields 0x40"},
		{audit.Change{Config: keepalive.Config{Count: 200}, Fields: audit.FieldCount}, keepalive.Config{Count: 200}.Validate().Error()},
	} {
		results, err := audit.Apply(context.Background(), h.PID, audit.Filter{}, tt.change)
		assert.EqualError(t, err, tt.err, "%+v", tt.change)
		assert.Nil(t, results)
	}
	for fd, v := range before {
		assert.Equal(t, v, readFrom(t, h.PID, fd), "fd %d untouched", fd)
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
		results, err := audit.Apply(context.Background(), h.PID, audit.Filter{}, audit.Change{Config: c, Fields: audit.AllFields})
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
	results, err := audit.Apply(ctx, h.PID, audit.Filter{}, audit.Change{Config: keepalive.Config{Idle: 5 * time.Second}, Fields: audit.FieldIdle})
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
