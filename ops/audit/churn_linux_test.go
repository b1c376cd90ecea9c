package audit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// The churn test runs audit and apply against a process that opens and
// closes connections as fast as it can, thousands a second, so that
// between a listing and the reading of a socket its descriptor is often
// closed, or reused for another connection. Each connection's socket
// carries values derived from its own inode (churnConfig), set before it
// connects, so that a value read from a socket can be checked against the
// socket it is reported for; the churning process itself checks each of
// its sockets before closing it, so that a change made to a socket outside
// apply's filter is seen.

// churnFor is how long the test churns at least, and churnAtMost how long
// it goes on churning until audit has read a socket and apply changed one:
// on a loaded machine a connection may live less than the time between an
// audit's listing and its reading, every time for a while.
const (
	churnFor    = 2 * time.Second
	churnAtMost = 60 * time.Second
)

// churnApplied is what apply sets on the connections to port A: values
// churnConfig never gives.
var churnApplied = audit.Change{
	Config: keepalive.Config{Count: 127, UserTimeout: 4242 * time.Millisecond},
	Fields: audit.FieldCount | audit.FieldUserTimeout,
}

// churnConfig is the Config of the socket with this inode: each field
// within its range, and no two sockets alike.
func churnConfig(inode uint64) keepalive.Config {
	const n = 32767
	return keepalive.Config{
		Idle:     time.Duration(1+inode%n) * time.Second,
		Interval: time.Duration(1+inode/n%n) * time.Second,
		Count:    int(1 + inode/n/n%100),
	}
}

// churnCheck says what is wrong with values v read from the socket with
// this inode, connected to port A (where apply may have set churnApplied)
// or another; empty if nothing.
func churnCheck(inode uint64, toA bool, v sockopts.Values) string {
	want := churnConfig(inode)
	ok := v.KeepAlive && v.Idle == want.Idle && v.Interval == want.Interval
	if toA {
		ok = ok && (v.Count == want.Count || v.Count == churnApplied.Config.Count) &&
			(v.UserTimeout == 0 || v.UserTimeout == churnApplied.Config.UserTimeout)
	} else {
		ok = ok && v.Count == want.Count && v.UserTimeout == 0
	}
	if ok {
		return ""
	}
	return fmt.Sprintf("socket %d (to A: %v) holds %+v; its own values are %v", inode, toA, v, want)
}

// churnEnv carries the ports A and B, "A,B", to the churn helper.
const churnEnv = "AUDIT_TEST_CHURN"

// churnStats is what the churn helper reports when its input closes.
type churnStats struct {
	Opened     int      // connections opened
	DialErrors int      // dials that failed
	Checked    int      // sockets checked before being closed
	WrongCount int      // sockets found wrong
	Wrong      []string // what was wrong with the first few
}

// acceptHelper listens on two loopback ports, A and B, prints them as
// "A,B", and accepts connections on both, each read until its peer ends
// it, until its input closes.
func acceptHelper() int {
	var ports []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "accept:", err)
			return 1
		}
		ports = append(ports, fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(io.Discard, c); c.Close() }()
			}
		}()
	}
	fmt.Println(strings.Join(ports, ","))
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// churnHelper opens connections to ports A and B of churnEnv in turn, from
// several goroutines, each keeping its last few open and closing the
// oldest (abortively, so that nothing lingers in TIME-WAIT) as it opens
// the next, after checking its values. It prints "churning" once started,
// and its churnStats when its input closes.
func churnHelper() int {
	var a, b int
	if _, err := fmt.Sscanf(os.Getenv(churnEnv), "%d,%d", &a, &b); err != nil {
		fmt.Fprintln(os.Stderr, "churn:", err)
		return 2
	}
	// 512 connections open at a time: at thousands a second each lives
	// some tens of milliseconds, long enough for an audit on a loaded
	// machine (the race detector, other work) to read some of those it
	// listed, short enough that many close between its listing and its
	// reading.
	const workers, open = 4, 128
	d := &net.Dialer{KeepAlive: -1, Control: func(network, address string, rc syscall.RawConn) error {
		var st unix.Stat_t
		var err error
		if cerr := rc.Control(func(fd uintptr) { err = unix.Fstat(int(fd), &st) }); cerr != nil {
			return cerr
		}
		if err != nil {
			return err
		}
		return churnConfig(st.Ino).Control(network, address, rc)
	}}
	var stop atomic.Bool
	var mu sync.Mutex
	var stats churnStats
	check := func(c *net.TCPConn, toA bool) {
		var st unix.Stat_t
		rc, err := c.SyscallConn()
		if err == nil {
			rc.Control(func(fd uintptr) { err = unix.Fstat(int(fd), &st) })
		}
		v, verr := sockopts.Read(c)
		mu.Lock()
		defer mu.Unlock()
		stats.Checked++
		w := ""
		if err != nil || verr != nil {
			w = fmt.Sprintf("reading a socket back: %v %v", err, verr)
		} else {
			w = churnCheck(st.Ino, toA, v)
		}
		if w != "" {
			stats.WrongCount++
			if len(stats.Wrong) < 10 {
				stats.Wrong = append(stats.Wrong, w)
			}
		}
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ring [open]*net.TCPConn
			var toA [open]bool
			opened, failed := 0, 0
			for i := w; !stop.Load(); i++ {
				port := []int{a, b}[i%2]
				c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					failed++
					continue
				}
				opened++
				slot := i % open
				if old := ring[slot]; old != nil {
					check(old, toA[slot])
					old.SetLinger(0)
					old.Close()
				}
				ring[slot], toA[slot] = c.(*net.TCPConn), port == a
			}
			for slot, c := range ring {
				if c != nil {
					check(c, toA[slot])
					c.SetLinger(0)
					c.Close()
				}
			}
			mu.Lock()
			stats.Opened += opened
			stats.DialErrors += failed
			mu.Unlock()
		}()
	}
	fmt.Println("churning")
	io.Copy(io.Discard, os.Stdin)
	stop.Store(true)
	wg.Wait()
	json.NewEncoder(os.Stdout).Encode(stats)
	return 0
}

// TestChurn runs audit and apply against a process that opens and closes
// connections thousands of times a second: neither fails; every value
// audit reports, and every value apply reads back, belongs to the socket
// it is reported for; a descriptor closed or reused meanwhile is reported
// as gone, never as another socket; apply changes no socket outside its
// filter (the churning process finds each of its sockets to port B as it
// made it) and each socket it changes whole; and no descriptor is left
// open in the test.
func TestChurn(t *testing.T) { forMethods(t, testChurn) }

func testChurn(t *testing.T, m audit.Method) {
	acc, err := testproc.Start(t, testproc.Opts{Env: []string{helperEnv + "=accept"}})
	require.NoError(t, err)
	line, err := acc.Stdout.ReadString('\n')
	require.NoError(t, err, "the accepting helper did not start")
	var a, b int
	_, err = fmt.Sscanf(line, "%d,%d", &a, &b)
	require.NoError(t, err, "the accepting helper said %q", line)
	churner, err := testproc.Start(t, testproc.Opts{Env: []string{helperEnv + "=churn", fmt.Sprintf("%s=%d,%d", churnEnv, a, b)}})
	require.NoError(t, err)
	line, err = churner.Stdout.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "churning\n", line)
	pid := churner.Cmd.Process.Pid
	toA := func(c audit.Conn) bool { return c.Remote.Port() == uint16(a) }

	ctx := context.Background()
	fds := openFDs(t)
	var audits, applies, listed, read, changed int
	gone := map[string]int{} // why a connection could not be read or changed, by kind
	kind := func(err error) string {
		switch s := err.Error(); {
		case strings.Contains(s, "is no longer socket"):
			return "descriptor reused"
		case strings.Contains(s, "closed descriptor"):
			return "descriptor closed"
		case strings.Contains(s, "was closed before"):
			return "socket closed"
		default:
			return s
		}
	}
	start := time.Now()
	for time.Since(start) < churnFor || (read == 0 || changed == 0) && time.Since(start) < churnAtMost {
		rep, err := audit.Audit(ctx, audit.Options{Filter: audit.Filter{PID: pid}, Method: m})
		require.NoError(t, err, "audit while connections churn")
		audits++
		listed += len(rep.Conns)
		for _, c := range rep.Conns {
			require.Equal(t, pid, c.PID)
			if c.Source == audit.SourceSocket {
				require.Equal(t, m, c.Method)
				read++
				assert.Empty(t, churnCheck(uint64(c.Inode), toA(c), valuesOf(c)), "audit's values for fd %d", c.FD)
				continue
			}
			require.ErrorIs(t, c.Err, os.ErrNotExist, "fd %d: only a descriptor gone meanwhile goes unread", c.FD)
			gone["audit: "+kind(c.Err)]++
		}

		ch := churnApplied
		ch.Method = m
		results, err := audit.Apply(ctx, pid, audit.Filter{Port: uint16(a)}, ch)
		require.NoError(t, err, "apply while connections churn")
		applies++
		for _, r := range results {
			require.True(t, toA(r.Before), "apply selected %v -> %v, not to port %d", r.Before.Local, r.Before.Remote, a)
			if r.Err != nil {
				require.ErrorIs(t, r.Err, os.ErrNotExist, "fd %d: only a descriptor gone meanwhile goes unchanged", r.Before.FD)
				gone["apply: "+kind(r.Err)]++
				continue
			}
			changed++
			require.Equal(t, m, r.After.Method)
			want := churnConfig(uint64(r.After.Inode))
			want.Count, want.UserTimeout = churnApplied.Config.Count, churnApplied.Config.UserTimeout
			assert.Equal(t, want, r.After.Config, "fd %d (socket %d) read back after apply", r.After.FD, r.After.Inode)
		}
	}
	elapsed := time.Since(start)
	assert.Equal(t, fds, openFDs(t), "descriptors open in the test before and after")

	require.NoError(t, churner.Stdin.Close())
	out, err := churner.Stdout.ReadBytes('\n')
	require.NoError(t, err, "the churning helper's report")
	var stats churnStats
	require.NoError(t, json.Unmarshal(out, &stats), "%s", out)
	t.Logf("%v: %d connections opened (%.0f a second), %d dials failed, %d checked by the churning process", elapsed.Round(time.Millisecond),
		stats.Opened, float64(stats.Opened)/elapsed.Seconds(), stats.DialErrors, stats.Checked)
	t.Logf("%d audits listed %d connections, read %d; %d applies changed %d; gone meanwhile: %v", audits, listed, read, applies, changed, gone)
	assert.Zero(t, stats.WrongCount, "sockets the churning process found changed beyond apply's filter or the change; the first: %q", stats.Wrong)
	assert.Positive(t, read, "audit read values while connections churned")
	assert.Positive(t, changed, "apply changed sockets while connections churned")
}
