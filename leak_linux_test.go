package keepalive_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// badConfigs are invalid, each in another way.
var badConfigs = []keepalive.Config{
	{Idle: -time.Second},
	{Interval: 1500 * time.Millisecond},
	{Count: 128},
	{UserTimeout: maxUserTimeout + time.Millisecond},
	{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 1500 * time.Microsecond},
}

type configOp struct {
	name string
	run  func(c keepalive.Config) error
}

// configOps returns every entry point that takes a Config. The dials go to
// addr; the base dialer and listen config count the sockets they create in
// sockets; Set and Control act on conn.
func configOps(t testing.TB, addr string, sockets *atomic.Int32, conn net.Conn) []configOp {
	t.Helper()
	count := func(string, string, syscall.RawConn) error {
		sockets.Add(1)
		return nil
	}
	nd := &net.Dialer{Control: count}
	nlc := &net.ListenConfig{Control: count}
	rc, err := conn.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	ctx := context.Background()
	closeConn := func(c net.Conn, err error) error {
		if c != nil {
			c.Close()
		}
		return err
	}
	closeListener := func(ln net.Listener, err error) error {
		if ln != nil {
			ln.Close()
		}
		return err
	}
	return []configOp{
		{"Dial", func(c keepalive.Config) error {
			d := &keepalive.Dialer{NetDialer: nd, Config: c}
			return closeConn(d.Dial("tcp", addr))
		}},
		{"DialContext", func(c keepalive.Config) error {
			d := &keepalive.Dialer{NetDialer: nd, Config: c}
			return closeConn(d.DialContext(ctx, "tcp", addr))
		}},
		{"DialTimeout", func(c keepalive.Config) error {
			d := &keepalive.Dialer{NetDialer: nd, Config: c}
			return closeConn(d.DialTimeout("tcp", addr, 10*time.Second))
		}},
		{"DialAddress", func(c keepalive.Config) error {
			d := &keepalive.Dialer{NetDialer: nd, Config: c}
			return closeConn(d.DialAddress(ctx, addr))
		}},
		{"ConfiguredNetDialer", func(c keepalive.Config) error {
			d := &keepalive.Dialer{NetDialer: nd, Config: c}
			_, err := d.ConfiguredNetDialer()
			return err
		}},
		{"ListenConfig.Listen", func(c keepalive.Config) error {
			lc := &keepalive.ListenConfig{NetListenConfig: nlc, Config: c}
			return closeListener(lc.Listen(ctx, "tcp", "127.0.0.1:0"))
		}},
		{"Listen", func(c keepalive.Config) error {
			return closeListener(keepalive.Listen("tcp", "127.0.0.1:0", c))
		}},
		{"Set", func(c keepalive.Config) error {
			return keepalive.Set(conn, c)
		}},
		{"Control", func(c keepalive.Config) error {
			return c.Control("tcp", addr, rc)
		}},
	}
}

// TestBadConfig checks that an invalid Config fails every entry point with
// the Validate error before any socket is created or touched.
func TestBadConfig(t *testing.T) {
	sentinel := listen(t, &keepalive.ListenConfig{})
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	conn, _ := pair(t, listen(t, &keepalive.ListenConfig{}), (&keepalive.Dialer{Config: c}).DialContext)
	before := readKernel(t, conn)
	fds := openFDs(t)

	var sockets atomic.Int32
	for _, op := range configOps(t, sentinel.Addr().String(), &sockets, conn) {
		for _, bad := range badConfigs {
			t.Run(op.name+"/"+configName(bad), func(t *testing.T) {
				want := bad.Validate()
				require.Error(t, want)
				assert.Equal(t, want, op.run(bad))
			})
		}
	}
	assert.Zero(t, sockets.Load(), "sockets created by the base dialer and listen config")
	assert.Equal(t, before, readKernel(t, conn), "values after Set and Control")
	assert.Equal(t, fds, openFDs(t), "open file descriptors")
	assertFirstAccept(t, sentinel)
}

// checkFDs runs round n times, after a first round that warms up, and
// checks that the number of open file descriptors is unchanged.
func checkFDs(t *testing.T, n int, round func()) {
	t.Helper()
	round()
	before := openFDs(t)
	for range n {
		round()
	}
	after := openFDs(t)
	t.Logf("open file descriptors: %d before %d rounds, %d after", before, n, after)
	assert.Equal(t, before, after, "open file descriptors")
}

// TestNoFDLeak checks that no path, failing or not, leaves a file
// descriptor open.
func TestNoFDLeak(t *testing.T) {
	const rounds = 300
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	ctx := context.Background()

	t.Run("invalid Config", func(t *testing.T) {
		sentinel := listen(t, &keepalive.ListenConfig{})
		conn, _ := pair(t, sentinel, plainDial)
		var sockets atomic.Int32
		ops := configOps(t, sentinel.Addr().String(), &sockets, conn)
		failures := 0
		checkFDs(t, rounds/len(badConfigs), func() {
			for _, op := range ops {
				for _, bad := range badConfigs {
					require.Error(t, op.run(bad), op.name)
					failures++
				}
			}
		})
		t.Logf("%d failures, the warm-up round included", failures)
		assert.Zero(t, sockets.Load(), "sockets created")
		assertFirstAccept(t, sentinel)
	})

	t.Run("caller hook error", func(t *testing.T) {
		errHook := errors.New("hook refuses")
		fail := func(string, string, syscall.RawConn) error { return errHook }
		sentinel := listen(t, &keepalive.ListenConfig{})
		d := &keepalive.Dialer{NetDialer: &net.Dialer{Control: fail}, Config: c}
		nd, err := d.ConfiguredNetDialer()
		require.NoError(t, err)
		lc := &keepalive.ListenConfig{NetListenConfig: &net.ListenConfig{Control: fail}, Config: c}
		checkFDs(t, rounds, func() {
			_, err := d.DialContext(ctx, "tcp", sentinel.Addr().String())
			require.ErrorIs(t, err, errHook)
			_, err = nd.DialContext(ctx, "tcp", sentinel.Addr().String())
			require.ErrorIs(t, err, errHook)
			_, err = lc.Listen(ctx, "tcp", "127.0.0.1:0")
			require.ErrorIs(t, err, errHook)
		})
		assertFirstAccept(t, sentinel)
	})

	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := ln.Addr().String()
		require.NoError(t, ln.Close())
		d := &keepalive.Dialer{Config: c}
		nd, err := d.ConfiguredNetDialer()
		require.NoError(t, err)
		refused := 0
		checkFDs(t, rounds, func() {
			for _, dial := range []dialFunc{d.DialContext, nd.DialContext} {
				conn, err := dial(ctx, "tcp", addr)
				if err == nil {
					conn.Close() // the port was taken again meanwhile
					continue
				}
				refused++
			}
		})
		t.Logf("%d dials refused, the warm-up round included", refused)
	})

	t.Run("dial, accept, close", func(t *testing.T) {
		lc := &keepalive.ListenConfig{Config: c}
		ln := listen(t, lc)
		d := &keepalive.Dialer{Config: c}
		nd, err := d.ConfiguredNetDialer()
		require.NoError(t, err)
		checkFDs(t, rounds, func() {
			for _, dial := range []dialFunc{d.DialContext, nd.DialContext} {
				conn, err := dial(ctx, "tcp", ln.Addr().String())
				require.NoError(t, err)
				accepted, err := ln.Accept()
				require.NoError(t, err)
				require.NoError(t, keepalive.Set(conn, c))
				_, err = keepalive.Get(accepted)
				require.NoError(t, err)
				require.NoError(t, keepalive.Disable(accepted))
				require.NoError(t, conn.Close())
				require.NoError(t, accepted.Close())
			}
			l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
			require.NoError(t, err)
			require.NoError(t, l.Close())
		})
	})
}

// settledGoroutines returns runtime.NumGoroutine once it has stopped
// changing, so that goroutines of earlier tests still on their way out do
// not count.
func settledGoroutines() int {
	n := runtime.NumGoroutine()
	for range 100 {
		time.Sleep(10 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			return n
		}
		n = m
	}
	return n
}

// TestNoGoroutines checks that dialing, listening, accepting, Set, Get and
// Disable leave no goroutine behind, with every connection still open.
func TestNoGoroutines(t *testing.T) {
	c := keepalive.Config{Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 40 * time.Second}
	ctx := context.Background()
	before := settledGoroutines()

	lc := &keepalive.ListenConfig{Config: c}
	ln1, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln1.Close() })
	ln2, err := keepalive.Listen("tcp", "127.0.0.1:0", c)
	require.NoError(t, err)
	t.Cleanup(func() { ln2.Close() })
	d := &keepalive.Dialer{Config: c}
	nd, err := d.ConfiguredNetDialer()
	require.NoError(t, err)
	conns := 0
	for _, ln := range []net.Listener{ln1, ln2} {
		for _, dial := range []dialFunc{d.DialContext, nd.DialContext} {
			// The dial completes in the listen backlog, so one
			// goroutine can dial and then accept.
			conn, err := dial(ctx, "tcp", ln.Addr().String())
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			accepted, err := ln.Accept()
			require.NoError(t, err)
			t.Cleanup(func() { accepted.Close() })
			for _, c := range []net.Conn{conn, accepted} {
				require.NoError(t, keepalive.Set(c, keepalive.Config{Idle: time.Minute}))
				_, err := keepalive.Get(c)
				require.NoError(t, err)
				require.NoError(t, keepalive.Disable(c))
			}
			conns += 2
		}
	}
	during := runtime.NumGoroutine()
	t.Logf("goroutines: %d before, %d with 2 listeners and %d connections open", before, during, conns)
	assert.Equal(t, before, during)
}
