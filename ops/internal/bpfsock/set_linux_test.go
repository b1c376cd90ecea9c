package bpfsock

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// conn is one end of a loopback connection of this test, with its inode.
type conn struct {
	c     *net.TCPConn
	inode uint64
}

// pairs opens n loopback connections with keepalive off, and returns
// their dialled and accepted ends.
func pairs(t *testing.T, n int) (dialled, accepted []conn) {
	t.Helper()
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	d := net.Dialer{KeepAlive: -1}
	for range n {
		c, err := d.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		a, err := ln.Accept()
		require.NoError(t, err)
		t.Cleanup(func() { a.Close() })
		dialled = append(dialled, conn{c.(*net.TCPConn), inodeOf(t, c)})
		accepted = append(accepted, conn{a.(*net.TCPConn), inodeOf(t, a)})
	}
	return dialled, accepted
}

func inodeOf(t *testing.T, c net.Conn) uint64 {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	var st unix.Stat_t
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }))
	require.NoError(t, serr)
	return st.Ino
}

func read(t *testing.T, c *net.TCPConn) sockopts.Values {
	t.Helper()
	v, err := sockopts.Read(c)
	require.NoError(t, err)
	return v
}

func inForce(v sockopts.Values) InForce {
	return InForce{KeepAlive: v.KeepAlive, Idle: v.Idle, Interval: v.Interval, Count: v.Count, UserTimeout: v.UserTimeout}
}

// setup loads the kernel's offsets and a selection of n, closed at
// cleanup, and the set iterator over it.
func setup(t *testing.T, n int) (*Selection, func() map[uint64]SetResult) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "loading BPF programs needs root")
	}
	k, err := LoadKernel()
	require.NoError(t, err)
	sel, err := NewSelection(n)
	require.NoError(t, err)
	t.Cleanup(func() { sel.Close() })
	prog, err := k.SetIter(sel)
	require.NoError(t, err)
	t.Cleanup(func() { prog.Close() })
	nss, err := NamespacesOf(nil)
	require.NoError(t, err)
	t.Cleanup(func() { closeAll(nss) })
	return sel, func() map[uint64]SetResult {
		t.Helper()
		res, err := RunSet(context.Background(), prog, nss)
		require.NoError(t, err)
		return res
	}
}

// TestSetIter sets options on the sockets selected, and checks them and
// the others with getsockopt: only the options named change, only on the
// sockets selected, and each is reported once with what was read before
// and after.
func TestSetIter(t *testing.T) {
	dialled, accepted := pairs(t, 3)
	sel, run := setup(t, 3)
	sys := read(t, accepted[2].c) // untouched: keepalive off, the defaults
	w := Want{Set: KeepAlive | Idle | UserTimeout, KeepAlive: 1, Idle: 42, Interval: 999, UserTimeout: 4200}
	for _, c := range []conn{dialled[0], accepted[1]} {
		require.NoError(t, sel.Add(c.inode, w))
	}
	res := run()
	require.Len(t, res, 2, "the sockets selected, each once")
	want := sys
	want.KeepAlive, want.Idle, want.UserTimeout = true, 42*time.Second, 4200*time.Millisecond
	for _, c := range []conn{dialled[0], accepted[1]} {
		r := res[c.inode]
		assert.Equal(t, want, read(t, c.c), "socket %d: getsockopt after", c.inode)
		assert.Equal(t, inForce(sys), r.Before, "socket %d: before", c.inode)
		assert.Equal(t, inForce(want), r.After, "socket %d: after", c.inode)
		assert.Equal(t, KeepAlive|Idle|UserTimeout, r.Set)
		assert.Zero(t, r.Refused)
		assert.Zero(t, r.BeforeErrs|r.AfterErrs|r.RestoreErrs)
	}
	for _, c := range []conn{dialled[1], dialled[2], accepted[0], accepted[2]} {
		assert.Equal(t, sys, read(t, c.c), "socket %d, not selected", c.inode)
	}
}

// TestSetIterRefused has the kernel refuse an option (TCP_KEEPCNT 200,
// above its 127): the options set before it are set back, those after
// it are not tried, and the socket is as it was.
func TestSetIterRefused(t *testing.T) {
	dialled, _ := pairs(t, 1)
	c := dialled[0]
	sel, run := setup(t, 1)
	before := read(t, c.c)
	require.NoError(t, sel.Add(c.inode, Want{Set: AllOptions, KeepAlive: 1, Idle: 42, Interval: 4, Count: 200, UserTimeout: 4200}))
	r := run()[c.inode]
	assert.Equal(t, Count, r.Refused)
	assert.Equal(t, unix.EINVAL, r.Errno)
	assert.Zero(t, r.Set, "set back")
	assert.Zero(t, r.RestoreErrs)
	assert.Equal(t, inForce(before), r.Before)
	assert.Equal(t, inForce(before), r.After)
	assert.Equal(t, before, read(t, c.c), "getsockopt after")
}

// TestSetIterOverflow selects more sockets than one read of the
// iterator's output holds: the kernel shows the program a socket whose
// report did not fit again, and each is still changed once and reported
// once, with the values it had before.
func TestSetIterOverflow(t *testing.T) {
	const n = 500 // 1,000 ends of 104 bytes: three reads of 32 KiB
	dialled, accepted := pairs(t, n)
	sel, run := setup(t, 2*n)
	before := read(t, dialled[0].c)
	for i, c := range append(dialled, accepted...) {
		require.NoError(t, sel.Add(c.inode, Want{Set: Idle, Idle: uint32(1 + i)}))
	}
	res := run()
	require.Len(t, res, 2*n)
	for i, c := range append(dialled, accepted...) {
		r := res[c.inode]
		assert.Equal(t, before.Idle, r.Before.Idle, "socket %d: before, read once", c.inode)
		assert.Equal(t, time.Duration(1+i)*time.Second, r.After.Idle)
		if i%97 == 0 {
			assert.Equal(t, time.Duration(1+i)*time.Second, read(t, c.c).Idle, "socket %d: getsockopt", c.inode)
		}
	}
}

// TestSetIterHeld asks for values a socket holds already: none is written
// but SO_KEEPALIVE on, as keepalive.Set does.
func TestSetIterHeld(t *testing.T) {
	dialled, _ := pairs(t, 1)
	c := dialled[0]
	sel, run := setup(t, 1)
	v := read(t, c.c)
	require.NoError(t, sel.Add(c.inode, Want{Set: AllOptions, KeepAlive: 1, Idle: uint32(v.Idle / time.Second), Interval: uint32(v.Interval / time.Second), Count: uint32(v.Count)}))
	r := run()[c.inode]
	assert.Equal(t, KeepAlive, r.Set, "only SO_KEEPALIVE on is written")
	want := v
	want.KeepAlive = true
	assert.Equal(t, want, read(t, c.c))
}
