package audit_test

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// A process may close a descriptor and open another socket on the same
// number between the moment audit and apply list its sockets and the
// moment they duplicate the descriptor. These tests make that happen every
// time, at that moment (audit's test hook calls the helper there), and
// check that the duplicate is recognised as another socket: audit does not
// report its values as the listed connection's, and apply leaves it as it
// is, since its filter did not select it.

// reused is the Config of the socket put on the reused descriptor: values
// no other socket of the tests has.
var reused = keepalive.Config{Idle: 77 * time.Second, Interval: 7 * time.Second, Count: 7, UserTimeout: 7700 * time.Millisecond}

// reuseAt makes process h reuse descriptor fd, for a socket with the
// Config reused, the first time audit is about to duplicate it; the
// returned function says what was reused, and fails the test if nothing
// was.
func reuseAt(t *testing.T, h *helper, fd int) func() testproc.Reused {
	t.Helper()
	var once sync.Once
	var r testproc.Reused
	var err error
	restore := audit.SetTestHookDup(func(pid, n int) {
		if pid == h.PID && n == fd {
			once.Do(func() { r, err = h.proc.Reuse(fd, reused.String()) })
		}
	})
	t.Cleanup(restore)
	return func() testproc.Reused {
		t.Helper()
		restore()
		require.NoError(t, err, "the helper reused descriptor %d", fd)
		require.NotZero(t, r.Inode, "descriptor %d was never about to be duplicated", fd)
		return r
	}
}

// dialedEnd returns the connection of h that is a dialed end, as listed
// without reading values.
func dialedEnd(t *testing.T, h *helper) audit.Conn {
	t.Helper()
	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}, KernelOnly: true})
	require.NoError(t, err)
	for _, c := range rep.Conns {
		if c.Remote.Port() == uint16(h.Port) {
			return c
		}
	}
	t.Fatalf("no dialed end among %+v", rep.Conns)
	return audit.Conn{}
}

// TestAuditDescriptorReused checks that audit reports a connection whose
// descriptor was reused before it could be read with no values and the
// reason, not with the values of the socket now on the descriptor.
func TestAuditDescriptorReused(t *testing.T) { forMethods(t, testAuditDescriptorReused) }

func testAuditDescriptorReused(t *testing.T, m audit.Method) {
	own := keepalive.Config{Idle: 33 * time.Second, Interval: 3 * time.Second, Count: 3}
	h := startHold(t, 1, own.String(), false, nil)
	listed := dialedEnd(t, h)
	done := reuseAt(t, h, listed.FD)

	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: h.PID}, Method: m})
	require.NoError(t, err)
	r := done()
	t.Logf("descriptor %d: socket %d listed, socket %d put there before it was read", listed.FD, listed.Inode, r.Inode)
	require.NotEqual(t, uint64(listed.Inode), r.Inode)
	require.Equal(t, reused, configAt(t, h.PID, listed.FD), "the descriptor now holds the other socket")

	var got *audit.Conn
	for i := range rep.Conns {
		if rep.Conns[i].Inode == listed.Inode {
			got = &rep.Conns[i]
		}
	}
	require.NotNil(t, got, "the listed connection is reported")
	assert.NotEqual(t, audit.SourceSocket, got.Source, "no values read for it: %+v", got)
	assert.Equal(t, keepalive.Config{}, got.Config, "none of the other socket's values")
	assert.ErrorIs(t, got.Err, os.ErrNotExist)
	want := fmt.Sprintf("audit: process %d descriptor %d is no longer socket %d: file does not exist", h.PID, listed.FD, listed.Inode)
	if m == audit.MethodBPF {
		// The iterator looks for the socket listed, by its inode: no
		// descriptor holds it any more.
		want = fmt.Sprintf("audit: socket %d (process %d descriptor %d) was closed before it was read: file does not exist", listed.Inode, h.PID, listed.FD)
	}
	assert.EqualError(t, got.Err, want)
	for _, c := range rep.Conns {
		if c.Source == audit.SourceSocket {
			assert.Equal(t, valuesOf(c), readFrom(t, h.PID, c.FD), "fd %d: values read are its socket's", c.FD)
			assert.NotEqual(t, reused, c.Config, "fd %d (socket %d): the other socket's values", c.FD, c.Inode)
		}
	}
}

// TestApplyDescriptorReused checks that apply, asked for the connections
// of one port, leaves alone the socket put on one of their descriptors
// after the listing: it is not among those the filter selected.
func TestApplyDescriptorReused(t *testing.T) { forMethods(t, testApplyDescriptorReused) }

func testApplyDescriptorReused(t *testing.T, m audit.Method) {
	own := keepalive.Config{Idle: 33 * time.Second, Interval: 3 * time.Second, Count: 3}
	h := startHold(t, 1, own.String(), false, nil)
	listed := dialedEnd(t, h)
	done := reuseAt(t, h, listed.FD)

	ch := audit.Change{Config: keepalive.Config{Idle: 50 * time.Second, UserTimeout: 5 * time.Second}, Fields: audit.FieldKeepAlive | audit.FieldIdle | audit.FieldUserTimeout, Method: m}
	results, err := audit.Apply(context.Background(), h.PID, audit.Filter{Port: listed.Local.Port()}, ch)
	require.NoError(t, err)
	r := done()
	require.Len(t, results, 2, "the dialed end and its peer")
	for _, res := range results {
		if res.Before.FD != listed.FD {
			assert.NoError(t, res.Err, "the peer, fd %d", res.Before.FD)
			assert.Equal(t, m, res.After.Method, "the peer, fd %d", res.Before.FD)
			continue
		}
		assert.ErrorIs(t, res.Err, os.ErrNotExist, "fd %d: not changed", res.Before.FD)
		assert.NotEqual(t, audit.SourceSocket, res.After.Source, "fd %d: no values read back", res.Before.FD)
	}
	assert.Equal(t, reused, configAt(t, h.PID, listed.FD), "the socket put on descriptor %d (inode %d) after the listing is as it was", listed.FD, r.Inode)
}

// configAt reads the Config of process pid's descriptor fd with the tests'
// own getsockopt.
func configAt(t *testing.T, pid, fd int) keepalive.Config {
	t.Helper()
	v := readFrom(t, pid, fd)
	return keepalive.Config{Off: !v.KeepAlive, Idle: v.Idle, Interval: v.Interval, Count: v.Count, UserTimeout: v.UserTimeout}
}
