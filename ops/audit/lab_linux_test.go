package audit_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/netlab"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// The end-to-end proof: programs no one here wrote (socat, redis-cli) hold
// connections through the lab's firewall, which forgets a flow after
// conntrackTimeout of silence. Audit flags them; after apply the same idle
// flow survives the firewall, while one left alone dies; and a flow the
// firewall then drops is declared dead within the applied bound.
const conntrackTimeout = 5 * time.Second

// applied is the Config applied to the running clients: the first probe
// after 2s of silence, well within the firewall's timeout, and a dead peer
// noticed within 2s + 3 × 1s = 5s.
var applied = keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3}

// criteria are the operator's questions: the firewall's idle timeout, and
// a dead peer noticed within 10s.
var criteria = audit.Criteria{IdleTimeout: conntrackTimeout, Detect: 10 * time.Second}

// TestSocatThroughFirewall: socat, which leaves keepalive off, holds a
// connection to an echo server through the firewall.
func TestSocatThroughFirewall(t *testing.T) {
	t.Parallel()
	needTool(t, "socat", "socat")
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: conntrackTimeout, Tag: "kaaudit"})
	addr := echoServer(t, lab)
	startClient := nsSpawner(t, lab.Client)

	fixed := startSocat(t, startClient, addr)
	control := startSocat(t, startClient, addr)
	for _, c := range []*socat{fixed, control} {
		c.roundTrip(t, "hello", 5*time.Second)
	}

	// Audit flags the flow: keepalive off, read from socat's socket.
	before := auditPID(t, fixed.cmd.Process.Pid)
	assert.Equal(t, audit.SourceSocket, before.Source)
	assert.False(t, before.Enabled)
	assert.Equal(t, readFrom(t, before.PID, before.FD), valuesOf(before), "audit's values; want getsockopt's")
	assert.Equal(t, audit.Off, before.Verdict)
	assert.Equal(t, audit.AtRisk, before.IdleTimeoutVerdict)

	results, err := audit.Apply(context.Background(), fixed.cmd.Process.Pid, audit.Filter{Remote: netipPrefix(lab)}, audit.Change{Config: applied, Fields: audit.AllFields})
	require.NoError(t, err)
	require.Len(t, results, 1)
	require.NoError(t, results[0].Err)
	assert.Equal(t, applied, results[0].After.Config)
	after := auditPID(t, fixed.cmd.Process.Pid)
	assert.Equal(t, audit.OK, after.Verdict, "after apply: %+v", after)
	assert.Equal(t, readFrom(t, after.PID, after.FD), valuesOf(after), "audit's values; want getsockopt's")

	// Both flows stay silent past the firewall's timeout.
	silence := conntrackTimeout + 3*time.Second
	t.Logf("both connections silent for %v; the firewall forgets a flow after %v", silence, conntrackTimeout)
	time.Sleep(silence)
	fixed.roundTrip(t, "still there?", 5*time.Second)
	dropped := lab.Dropped()
	assert.False(t, control.tryRoundTrip("still there?", 3*time.Second), "the connection left alone should be forgotten by the firewall")
	assert.Greater(t, lab.Dropped(), dropped, "the firewall dropped the forgotten flow's packets")

	// The firewall forgets every flow: the applied keepalive notices
	// within its bound, and socat ends with ETIMEDOUT.
	bound, err := applied.DetectionTime()
	require.NoError(t, err)
	lab.CutFlows()
	cut := time.Now()
	select {
	case <-fixed.exited:
	case <-time.After(bound + 10*time.Second):
		t.Fatalf("socat still running %v after the cut; the applied bound is %v", time.Since(cut), bound)
	}
	took := time.Since(cut)
	t.Logf("socat ended %v after the firewall forgot its flow; bound %v (missed by %v)", took.Round(time.Millisecond), bound, max(0, took-bound))
	assert.LessOrEqual(t, took, bound+500*time.Millisecond, "declared dead within idle + interval × count")
	assert.Contains(t, fixed.stderr(), "Connection timed out", "socat's own report")
	rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{Remote: netipPrefix(lab)}})
	require.NoError(t, err)
	for _, c := range rep.Conns {
		assert.NotEqual(t, fixed.cmd.Process.Pid, c.PID, "the dead connection is gone from the audit")
	}
}

// TestRedisCLIThroughFirewall: redis-cli sets its own keepalive (idle 15s,
// interval 5s, count 3), longer than the firewall keeps a silent flow, and
// sends a PING every 10s. Audit reads those values from its socket; after
// apply its PINGs keep being answered, while those of a redis-cli left
// alone are dropped.
func TestRedisCLIThroughFirewall(t *testing.T) {
	t.Parallel()
	needTool(t, "redis-server", "redis-server")
	needTool(t, "redis-cli", "redis-tools")
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: conntrackTimeout, Tag: "kaaudit"})
	startServer := nsSpawner(t, lab.Server)
	startClient := nsSpawner(t, lab.Client)
	server := exec.Command("redis-server", "--port", "6379", "--bind", "0.0.0.0", "--protected-mode", "no",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	server.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, startServer(server.Start))
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })

	const every = 10 * time.Second
	cli := func() *lineReader {
		cmd := exec.Command("redis-cli", "-h", lab.ServerAddr().String(), "-p", "6379", "-r", "-1", "-i", fmt.Sprint(every.Seconds()), "PING")
		return startLines(t, startClient, cmd)
	}
	var fixed, control *lineReader
	require.Eventually(t, func() bool {
		fixed, control = cli(), cli()
		return fixed.next(3*time.Second) == "PONG" && control.next(3*time.Second) == "PONG"
	}, 30*time.Second, time.Second, "redis-server answers")

	before := auditPID(t, fixed.cmd.Process.Pid)
	assert.Equal(t, audit.SourceSocket, before.Source)
	assert.Equal(t, keepalive.Config{Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3}, before.Config, "redis-cli's own values, read from its socket")
	assert.Equal(t, readFrom(t, before.PID, before.FD), valuesOf(before), "audit's values; want getsockopt's")
	assert.Equal(t, audit.AtRisk, before.Verdict, "idle 15s against the firewall's 5s")
	assert.Equal(t, audit.SlowDetect, before.DetectVerdict, "15s + 5s × 3 = 30s against 10s")

	results, err := audit.Apply(context.Background(), fixed.cmd.Process.Pid, audit.Filter{Port: 6379}, audit.Change{Config: applied, Fields: audit.AllFields})
	require.NoError(t, err)
	require.Len(t, results, 1)
	require.NoError(t, results[0].Err)
	after := auditPID(t, fixed.cmd.Process.Pid)
	assert.Equal(t, applied, after.Config)
	assert.Equal(t, audit.OK, after.Verdict)

	// The next PING goes out after 10s of silence, twice the firewall's
	// timeout.
	assert.Equal(t, "PONG", fixed.next(every+5*time.Second), "the applied redis-cli's next PING is answered")
	assert.Equal(t, "", control.next(5*time.Second), "the PING of the redis-cli left alone is dropped")
}

// auditPID audits process pid against criteria and returns its one
// connection.
func auditPID(t *testing.T, pid int) audit.Conn {
	t.Helper()
	rep, err := audit.Audit(context.Background(), audit.Options{Criteria: criteria, Filter: audit.Filter{PID: pid}})
	require.NoError(t, err)
	require.Len(t, rep.Conns, 1, "process %d's connections: %+v", pid, rep.Conns)
	t.Logf("audit: pid %d %s %v → %v %s, source %v, keepalive %v %v, verdict %v", pid, rep.Conns[0].Command, rep.Conns[0].Local, rep.Conns[0].Remote,
		rep.Conns[0].State, rep.Conns[0].Source, rep.Conns[0].Enabled, rep.Conns[0].Config, rep.Conns[0].Verdict)
	return rep.Conns[0]
}

// netipPrefix is the filter for the lab's server address.
func netipPrefix(lab *netlab.Lab) netip.Prefix {
	return netip.PrefixFrom(lab.ServerAddr(), 32)
}

// echoServer starts a line echo server in the lab's server namespace with
// keepalive off, so that only the client's probes cross the firewall.
func echoServer(t *testing.T, lab *netlab.Lab) string {
	t.Helper()
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		var err error
		ln, err = (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", ":0")
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(c, c)
		}
	}()
	return net.JoinHostPort(lab.ServerAddr().String(), fmt.Sprint(ln.Addr().(*net.TCPAddr).Port))
}

// socat is a running socat connected to an address, whose standard input
// and output the test holds.
type socat struct {
	*lineReader
	stdin io.WriteCloser
}

func startSocat(t *testing.T, start func(func() error) error, addr string) *socat {
	t.Helper()
	cmd := exec.Command("socat", "STDIO", "TCP:"+addr)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	s := &socat{stdin: stdin}
	s.lineReader = startLines(t, start, cmd)
	t.Cleanup(func() { stdin.Close() })
	return s
}

// roundTrip sends a line and fails the test unless it comes back within
// d.
func (s *socat) roundTrip(t *testing.T, line string, d time.Duration) {
	t.Helper()
	require.True(t, s.tryRoundTrip(line, d), "%q did not come back within %v; socat: %s", line, d, s.stderr())
}

func (s *socat) tryRoundTrip(line string, d time.Duration) bool {
	if _, err := io.WriteString(s.stdin, line+"\n"); err != nil {
		return false
	}
	return s.next(d) == line
}

// lineReader is a started program whose output lines the test reads.
type lineReader struct {
	cmd    *exec.Cmd
	lines  chan string
	exited chan struct{}
	mu     sync.Mutex
	errBuf strings.Builder
}

// startLines starts cmd through start and reads its output lines; the
// program is killed at cleanup.
func startLines(t *testing.T, start func(func() error) error, cmd *exec.Cmd) *lineReader {
	t.Helper()
	r := &lineReader{cmd: cmd, lines: make(chan string, 16), exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = writerFunc(func(b []byte) (int, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.errBuf.Write(b)
	})
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, start(cmd.Start))
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			r.lines <- sc.Text()
		}
		cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-r.exited
	})
	return r
}

// next returns the next output line, or "" if none comes within d.
func (r *lineReader) next(d time.Duration) string {
	select {
	case l := <-r.lines:
		return l
	case <-time.After(d):
		return ""
	}
}

func (r *lineReader) stderr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.errBuf.String()
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// nsSpawner returns a function that runs a process start on a thread in
// the network namespace that run enters (lab.Client, lab.Server). The
// thread lives until the test ends, so that the children's parent-death
// signal, which fires when the thread that started them ends, kills them
// only then, or when the test binary dies.
func nsSpawner(t *testing.T, run func(func() error) error) func(start func() error) error {
	t.Helper()
	var ns *os.File
	require.NoError(t, run(func() error {
		var err error
		ns, err = os.Open("/proc/thread-self/ns/net")
		return err
	}))
	starts := make(chan func())
	ready := make(chan error, 1)
	go func() {
		// Left locked: the thread ends with the goroutine instead of going
		// back to the runtime in the wrong namespace.
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			ready <- os.NewSyscallError("setns", err)
			return
		}
		ready <- nil
		for f := range starts {
			f()
		}
	}()
	require.NoError(t, <-ready)
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(starts) })
		ns.Close()
	})
	return func(start func() error) error {
		done := make(chan error, 1)
		starts <- func() { done <- start() }
		return <-done
	}
}

// needTool skips (in CI fails) a test whose program is not installed.
func needTool(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		skipOutsideCI(t, "%s is not installed (Debian package %s): %v", name, pkg, errors.Unwrap(err))
	}
}
