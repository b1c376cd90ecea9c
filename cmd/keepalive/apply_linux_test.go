package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// TestApplyKeeps runs apply, as an operator would, on programs no one here
// wrote that hold sockets with values of their own: redis-cli (idle 15s,
// interval 5s, count 3, no user timeout, set by hiredis) and socat (told to
// hold idle 20s, interval 4s, count 7 and a 45s user timeout, or keepalive
// off). Each case starts the program afresh, applies, and reads every field
// of the program's socket back with the test's own getsockopt: the fields
// given change, every other one, the user timeout included, stays as the
// program set it, and the peer's socket is not touched. The first lines
// say what was set and what kept, and the table shows the socket before
// and after.
func TestApplyKeeps(t *testing.T) {
	for _, tool := range []string{"redis-server", "redis-cli", "socat"} {
		needTool(t, tool)
	}
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	redis := startRedis(t)
	peer, accepted := loopback(t) // socat's peer
	go func() {
		for c := range accepted {
			go io.Copy(io.Discard, c)
		}
	}()

	redisCLI := func(t *testing.T) int {
		cmd := exec.Command("redis-cli", "-h", "127.0.0.1", "-p", fmt.Sprint(redis.port), "-r", "-1", "-i", "1", "PING")
		return startProgram(t, cmd)
	}
	socat := func(opts string) func(t *testing.T) int {
		return func(t *testing.T) int {
			cmd := exec.Command("socat", "STDIO", "TCP:"+peer.Addr().String()+opts)
			stdin, err := cmd.StdinPipe() // held open: socat waits for input
			require.NoError(t, err)
			t.Cleanup(func() { stdin.Close() })
			return startProgram(t, cmd)
		}
	}
	// TCP_USER_TIMEOUT is option 18 of IPPROTO_TCP (6), which socat sets
	// through its generic setsockopt-int.
	socatOwn := socat(",keepalive,keepidle=20,keepintvl=4,keepcnt=7,setsockopt-int=6:18:45000")
	socatOff := socat("")

	v := func(on bool, idle, interval time.Duration, count int, ut time.Duration) sockopts.Values {
		return sockopts.Values{KeepAlive: on, Idle: idle, Interval: interval, Count: count, UserTimeout: ut}
	}
	const s = time.Second
	cliOwn := v(true, 15*s, 5*s, 3, 0)
	socatValues := v(true, 20*s, 4*s, 7, 45*s)
	offValues := v(false, sys.Idle, sys.Interval, sys.Count, 0)
	for _, tt := range []struct {
		name      string
		start     func(t *testing.T) int
		before    sockopts.Values
		args      []string
		set, kept string
		after     sockopts.Values
	}{
		{"redis-cli: idle alone", redisCLI, cliOwn, []string{"-remote", "127.0.0.0/8", "-idle", "30s"},
			"keepalive on, idle 30s", "interval, count, user timeout, as each socket has them",
			v(true, 30*s, 5*s, 3, 0)},
		{"redis-cli: three fields, no user timeout added", redisCLI, cliOwn, []string{"-config", "idle=60s,interval=10s,count=5"},
			"keepalive on, idle 1m0s, interval 10s, count 5", "user timeout, as each socket has them",
			v(true, 60*s, 10*s, 5, 0)},
		{"redis-cli: off", redisCLI, cliOwn, []string{"-config", "off"},
			"keepalive off", "idle, interval, count, user timeout, as each socket has them",
			v(false, 15*s, 5*s, 3, 0)},
		{"socat: three fields, its user timeout kept", socatOwn, socatValues, []string{"-config", "idle=60s,interval=10s,count=5"},
			"keepalive on, idle 1m0s, interval 10s, count 5", "user timeout, as each socket has them",
			v(true, 60*s, 10*s, 5, 45*s)},
		{"socat: a flag wins over -config", socatOwn, socatValues, []string{"-config", "idle=60s,count=5", "-idle", "25s"},
			"keepalive on, idle 25s, count 5", "interval, user timeout, as each socket has them",
			v(true, 25*s, 4*s, 5, 45*s)},
		{"socat: user timeout removed, nothing else", socatOwn, socatValues, []string{"-user-timeout", "0"},
			"no user timeout", "keepalive on or off, idle, interval, count, as each socket has them",
			v(true, 20*s, 4*s, 7, 0)},
		{"socat: zero puts the system default back", socatOwn, socatValues, []string{"-idle", "0", "-count", "0"},
			fmt.Sprintf("keepalive on, idle system default (%v), count system default (%d)", sys.Idle, sys.Count), "interval, user timeout, as each socket has them",
			v(true, sys.Idle, 4*s, sys.Count, 45*s)},
		{"socat: -config \"\" puts every default back", socatOwn, socatValues, []string{"-config", ""},
			fmt.Sprintf("keepalive on, idle system default (%v), interval system default (%v), count system default (%d), no user timeout", sys.Idle, sys.Interval, sys.Count), "",
			v(true, sys.Idle, sys.Interval, sys.Count, 0)},
		{"socat: -off keeps the values", socatOwn, socatValues, []string{"-off"},
			"keepalive off", "idle, interval, count, user timeout, as each socket has them",
			v(false, 20*s, 4*s, 7, 45*s)},
		{"socat without keepalive: a user timeout alone leaves it off", socatOff, offValues, []string{"-user-timeout", "30s"},
			"user timeout 30s", "keepalive on or off, idle, interval, count, as each socket has them",
			v(false, sys.Idle, sys.Interval, sys.Count, 30*s)},
		{"socat without keepalive: interval turns it on", socatOff, offValues, []string{"-interval", "3s"},
			"keepalive on, interval 3s", "idle, count, user timeout, as each socket has them",
			v(true, sys.Idle, 3*s, sys.Count, 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pid := tt.start(t)
			conn := oneConn(t, pid)
			peerBefore := peerValues(t, conn)
			require.Equal(t, tt.before, readSocket(t, pid, conn.FD), "the program's own values")

			r := runArgs(context.Background(), append([]string{"apply", "-pid", fmt.Sprint(pid)}, tt.args...)...)
			t.Logf("stdout:\n%s", r.stdout)
			require.Equal(t, exitOK, r.code, r.stderr)
			assert.Empty(t, r.stderr)

			got := readSocket(t, pid, conn.FD)
			assert.Equal(t, tt.after, got, "every field read back after apply")
			assert.Equal(t, peerBefore, peerValues(t, conn), "the peer's socket")

			out := squeeze(r.stdout)
			assert.True(t, strings.HasPrefix(out, "set: "+tt.set+"\n"), "first line: %q", out)
			if tt.kept != "" {
				assert.Contains(t, out, "\nkept: "+tt.kept+"\n")
			} else {
				assert.NotContains(t, out, "kept:")
			}
			assert.Contains(t, out, fmt.Sprintf(" %d %v %v %s %s ", conn.FD, conn.Local, conn.Remote, valuesText(tt.before), valuesText(tt.after)),
				"the row shows the socket before and after")
		})
	}
}

// valuesText writes v as apply's table does.
func valuesText(v sockopts.Values) string {
	c := keepalive.Config{Idle: v.Idle, Interval: v.Interval, Count: v.Count, UserTimeout: v.UserTimeout}
	s := onOff(v.KeepAlive) + " " + c.String()
	if v.UserTimeout == 0 {
		s += ", no user timeout"
	}
	return s
}

// needTool skips (in CI fails) a test whose program is not installed.
func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		skipOutsideCI(t, "%s is not installed: %v", name, err)
	}
}

// startProgram starts cmd, kills it at cleanup, and returns its pid.
func startProgram(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	var stderr syncBuffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, spawn(cmd.Start))
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("%s said: %s", cmd.Path, stderr.String())
		}
	})
	return cmd.Process.Pid
}

// redisServer is a redis-server the test started on loopback.
type redisServer struct {
	pid, port int
}

// startRedis starts redis-server on a free loopback port, with nothing
// saved, and stops it at cleanup.
func startRedis(t *testing.T) redisServer {
	t.Helper()
	for try := 1; ; try++ {
		_, port, err := net.SplitHostPort(freePort(t))
		require.NoError(t, err)
		cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
		out := &syncBuffer{}
		cmd.Stdout = out
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		require.NoError(t, spawn(cmd.Start))
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if c, err := net.Dial("tcp", "127.0.0.1:"+port); err == nil {
				c.Close()
				t.Cleanup(func() { cmd.Process.Kill(); <-exited })
				var r redisServer
				fmt.Sscan(port, &r.port)
				r.pid = cmd.Process.Pid
				return r
			}
			select {
			case <-exited:
				deadline = time.Time{}
			case <-time.After(20 * time.Millisecond):
			}
		}
		cmd.Process.Kill()
		<-exited
		if try == 3 || !strings.Contains(out.String(), "Address already in use") {
			t.Fatalf("redis-server did not start on port %s:\n%s", port, out)
		}
	}
}

// oneConn waits until process pid holds exactly one established TCP
// connection, and returns it.
func oneConn(t *testing.T, pid int) audit.Conn {
	t.Helper()
	var conns []audit.Conn
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{PID: pid}, KernelOnly: true})
		require.NoError(t, err)
		conns = rep.Conns
		if len(conns) == 1 && conns[0].State == audit.Established {
			return conns[0]
		}
	}
	t.Fatalf("process %d holds %d connections, not one established: %+v", pid, len(conns), conns)
	return audit.Conn{}
}

// peerValues reads the values of the other end of conn, wherever it is
// held.
func peerValues(t *testing.T, conn audit.Conn) sockopts.Values {
	t.Helper()
	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{Port: conn.Local.Port()}, KernelOnly: true})
	require.NoError(t, err)
	for _, c := range rep.Conns {
		if c.Local == conn.Remote && c.Remote == conn.Local {
			require.NotZero(t, c.PID, "the peer's owner")
			return readSocket(t, c.PID, c.FD)
		}
	}
	t.Fatalf("no peer of %v -> %v", conn.Local, conn.Remote)
	return sockopts.Values{}
}

// readSocket reads the options of process pid's descriptor fd with the
// tests' own getsockopt, on a duplicate made with pidfd_getfd.
func readSocket(t *testing.T, pid, fd int) sockopts.Values {
	t.Helper()
	v, err := sockopts.ReadFrom(pid, fd)
	require.NoError(t, err)
	return v
}
