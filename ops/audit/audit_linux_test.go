package audit_test

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// pairOf dials a fresh loopback listener with dial and accepts; both ends
// and the listener are closed at cleanup.
func pairOf(t *testing.T, dial func(ctx context.Context, network, addr string) (net.Conn, error)) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		ch <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := dial(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	a := <-ch
	require.NotNil(t, a)
	t.Cleanup(func() { a.Close() })
	return d.(*net.TCPConn), a.(*net.TCPConn)
}

// auditOne audits the connections of this process whose local or remote
// port is that of conn's local end, and returns the one whose local
// address is conn's.
func auditOne(t *testing.T, o audit.Options, conn net.Conn) audit.Conn {
	t.Helper()
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	o.Filter = audit.Filter{PID: os.Getpid(), Port: local.Port()}
	rep, err := audit.Audit(context.Background(), o)
	require.NoError(t, err)
	for _, c := range rep.Conns {
		if c.Local == local {
			return c
		}
	}
	t.Fatalf("audit did not report %v; it reported %d connections", local, len(rep.Conns))
	return audit.Conn{}
}

// fdOf returns conn's descriptor number in this process.
func fdOf(t *testing.T, conn *net.TCPConn) int {
	t.Helper()
	rc, err := conn.SyscallConn()
	require.NoError(t, err)
	var fd int
	require.NoError(t, rc.Control(func(f uintptr) { fd = int(f) }))
	return fd
}

// TestAuditValues checks the values audit reads from sockets this test
// opened with known Configs against what getsockopt reports for them, on
// both ends, and the owner audit finds against this process.
func TestAuditValues(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	for _, tt := range []struct {
		name   string
		config *keepalive.Config // nil: keepalive off
		want   sockopts.Values   // on the dialed end
	}{
		{"all fields", &keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 45 * time.Second},
			sockopts.Values{KeepAlive: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 45 * time.Second}},
		{"idle only", &keepalive.Config{Idle: 61 * time.Second},
			sockopts.Values{KeepAlive: true, Idle: 61 * time.Second, Interval: sys.Interval, Count: sys.Count}},
		{"zero Config", &keepalive.Config{},
			sockopts.Values{KeepAlive: true, Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count}},
		{"keepalive off", nil,
			sockopts.Values{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			forMethods(t, func(t *testing.T, m audit.Method) {
				auditValues(t, m, tt.config, tt.want, comm)
			})
		})
	}
}

// auditValues is TestAuditValues for one Config, through method m.
func auditValues(t *testing.T, m audit.Method, config *keepalive.Config, want sockopts.Values, comm []byte) {
	dial := (&net.Dialer{KeepAlive: -1}).DialContext
	if config != nil {
		dial = (&keepalive.Dialer{Config: *config}).DialContext
	}
	dialed, accepted := pairOf(t, dial)
	for _, end := range []struct {
		name string
		conn *net.TCPConn
	}{{"dialed", dialed}, {"accepted", accepted}} {
		got := auditOne(t, audit.Options{Method: m}, end.conn)
		kernel, err := sockopts.Read(end.conn)
		require.NoError(t, err)
		assert.Equal(t, kernel, valuesOf(got), "%s: audit's values; want getsockopt's", end.name)
		assert.Equal(t, audit.SourceSocket, got.Source, end.name)
		assert.Equal(t, m, got.Method, end.name)
		assert.NoError(t, got.Err, end.name)
		assert.Nil(t, got.SetBy, "%s: no policy set it", end.name)
		assert.Equal(t, os.Getpid(), got.PID, end.name)
		assert.Equal(t, strings.TrimSpace(string(comm)), got.Command, end.name)
		assert.Equal(t, fdOf(t, end.conn), got.FD, end.name)
		assert.Equal(t, audit.Established, got.State, end.name)
		assert.Equal(t, end.conn.RemoteAddr().(*net.TCPAddr).AddrPort(), got.Remote, end.name)
	}
	assert.Equal(t, want, valuesOf(auditOne(t, audit.Options{Method: m}, dialed)), "dialed end against the Config")
}

// TestAuditKernelOnly checks what audit reports without reading sockets:
// keepalive on or off as sock_diag's timer shows it, no values.
func TestAuditKernelOnly(t *testing.T) {
	c := keepalive.Config{Idle: 40 * time.Second, Interval: 5 * time.Second, Count: 2}
	dialed, accepted := pairOf(t, (&keepalive.Dialer{Config: c}).DialContext)
	on := auditOne(t, audit.Options{KernelOnly: true, Criteria: audit.Criteria{IdleTimeout: 30 * time.Second}}, dialed)
	assert.Equal(t, audit.SourceKernel, on.Source)
	assert.True(t, on.Enabled)
	assert.Equal(t, keepalive.Config{}, on.Config, "no values without reading the socket")
	assert.Equal(t, audit.TimerKeepalive, on.Timer.Kind)
	assert.LessOrEqual(t, on.Timer.Expires, c.Idle)
	assert.Greater(t, on.Timer.Expires, 30*time.Second, "the timer was armed for Idle 40s a moment ago")
	assert.Equal(t, audit.AtRisk, on.Verdict, "the first probe cannot come before the timer fires, after the idle timeout")

	off := auditOne(t, audit.Options{KernelOnly: true}, accepted)
	assert.Equal(t, audit.SourceKernel, off.Source)
	assert.False(t, off.Enabled)
	assert.Equal(t, audit.TimerNone, off.Timer.Kind)
	assert.Equal(t, audit.Off, off.Verdict)
}

// TestAuditVerdicts checks the verdicts against the criteria for values
// read from sockets.
func TestAuditVerdicts(t *testing.T) {
	c := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5} // detection 1m50s
	dialed, accepted := pairOf(t, (&keepalive.Dialer{Config: c}).DialContext)
	for _, tt := range []struct {
		name                 string
		criteria             audit.Criteria
		idle, detect, verdct audit.Verdict
	}{
		{"none asked", audit.Criteria{}, audit.NotChecked, audit.NotChecked, audit.OK},
		{"idle timeout above Idle", audit.Criteria{IdleTimeout: 61 * time.Second}, audit.OK, audit.NotChecked, audit.OK},
		{"idle timeout equal to Idle", audit.Criteria{IdleTimeout: 60 * time.Second}, audit.AtRisk, audit.NotChecked, audit.AtRisk},
		{"detect met exactly", audit.Criteria{Detect: 110 * time.Second}, audit.NotChecked, audit.OK, audit.OK},
		{"detect missed", audit.Criteria{Detect: 109 * time.Second}, audit.NotChecked, audit.SlowDetect, audit.SlowDetect},
		{"both missed: at-risk first", audit.Criteria{IdleTimeout: 30 * time.Second, Detect: time.Minute}, audit.AtRisk, audit.SlowDetect, audit.AtRisk},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := auditOne(t, audit.Options{Criteria: tt.criteria}, dialed)
			assert.Equal(t, 110*time.Second, got.DetectionTime)
			assert.Equal(t, tt.idle, got.IdleTimeoutVerdict, "idle timeout verdict")
			assert.Equal(t, tt.detect, got.DetectVerdict, "detect verdict")
			assert.Equal(t, tt.verdct, got.Verdict, "verdict")

			off := auditOne(t, audit.Options{Criteria: tt.criteria}, accepted)
			assert.Equal(t, audit.Off, off.Verdict, "keepalive off")
		})
	}
}

// TestAuditFilters checks that the port, remote and pid filters select
// exactly the connections they name.
func TestAuditFilters(t *testing.T) {
	dialed, accepted := pairOf(t, (&net.Dialer{KeepAlive: -1}).DialContext)
	local := dialed.LocalAddr().(*net.TCPAddr).AddrPort()
	server := accepted.LocalAddr().(*net.TCPAddr).AddrPort()
	other := startHold(t, 1, "off", false, nil)
	selected := func(t *testing.T, f audit.Filter) []netip.AddrPort {
		t.Helper()
		rep, err := audit.Audit(context.Background(), audit.Options{Filter: f, KernelOnly: true})
		require.NoError(t, err)
		var got []netip.AddrPort
		for _, c := range rep.Conns {
			if c.Local == local || c.Local == server {
				got = append(got, c.Local)
			}
		}
		return got
	}
	for _, tt := range []struct {
		name   string
		filter audit.Filter
		want   []netip.AddrPort
	}{
		{"server port matches both ends", audit.Filter{PID: os.Getpid(), Port: server.Port()}, []netip.AddrPort{local, server}},
		{"client port matches both ends", audit.Filter{Port: local.Port()}, []netip.AddrPort{local, server}},
		{"remote address and port", audit.Filter{Port: server.Port(), Remote: netip.PrefixFrom(server.Addr(), 32)}, []netip.AddrPort{local, server}},
		{"remote prefix elsewhere", audit.Filter{Port: server.Port(), Remote: netip.MustParsePrefix("10.0.0.0/8")}, nil},
		{"another process", audit.Filter{PID: other.PID, Port: server.Port()}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.ElementsMatch(t, tt.want, selected(t, tt.filter))
		})
	}
}

// TestAuditJSON checks the JSON form of a connection: the fields the
// command's -json prints, durations in Go's notation.
func TestAuditJSON(t *testing.T) {
	c := keepalive.Config{Idle: 90 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: 2 * time.Minute}
	dialed, _ := pairOf(t, (&keepalive.Dialer{Config: c}).DialContext)
	got := auditOne(t, audit.Options{Criteria: audit.Criteria{IdleTimeout: 350 * time.Second, Detect: time.Minute}}, dialed)
	b, err := json.Marshal(got)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	for k, v := range map[string]any{
		"pid": float64(os.Getpid()), "fd": float64(fdOf(t, dialed)), "local": dialed.LocalAddr().String(), "remote": dialed.RemoteAddr().String(),
		"state": "established", "source": "socket", "enabled": true, "idle": "1m30s", "interval": "10s", "count": float64(3),
		"user_timeout": "2m0s", "detection_time": "2m0s", "idle_timeout_verdict": "ok", "detect_verdict": "slow-detect", "verdict": "slow-detect",
	} {
		assert.Equal(t, v, m[k], "%s in %s", k, b)
	}
	assert.Contains(t, m, "command")
	assert.NotContains(t, m, "error")
}

// TestAuditCancel checks that a cancelled audit returns the context's
// error and leaves no descriptor open.
func TestAuditCancel(t *testing.T) {
	pairOf(t, (&net.Dialer{KeepAlive: -1}).DialContext)
	before := openFDs(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := audit.Audit(ctx, audit.Options{})
	assert.ErrorIs(t, err, context.Canceled)
	// Cancelled midway, from the progress callback, in each stage.
	for _, stage := range []audit.Stage{audit.Listing, audit.Owners, audit.Reading} {
		ctx, cancel := context.WithCancel(context.Background())
		_, err := audit.Audit(ctx, audit.Options{Progress: func(p audit.Progress) {
			if p.Stage == stage {
				cancel()
			}
		}})
		cancel()
		assert.ErrorIs(t, err, context.Canceled, "cancelled while %v", stage)
	}
	assert.Equal(t, before, openFDs(t), "descriptors open before and after")
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	return len(ents)
}
