package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/idletimeout"
	"github.com/keepalive-go/keepalive/internal/netlab"
	"github.com/keepalive-go/keepalive/internal/testproc"
)

// These tests prove the command's wiring: its flags reach the search, and
// what it prints. The search itself, its answers and its times, is proven
// by idletimeout's own tests in the lab.

// pathServer is a TCP server with keepalive off that holds every
// connection it accepts, reading it until it ends, and counts them.
type pathServer struct {
	addr string

	mu                             sync.Mutex
	open, maxOpen, accepted, bytes int
}

// startPathServer starts a pathServer on a listener from listen; with
// closeAtOnce it closes each connection as soon as it accepts it instead.
// Everything is closed at cleanup.
func startPathServer(t *testing.T, listen func(lc *net.ListenConfig) (net.Listener, error), closeAtOnce bool) *pathServer {
	t.Helper()
	ln, err := listen(&net.ListenConfig{KeepAlive: -1})
	require.NoError(t, err)
	s := &pathServer{addr: ln.Addr().String()}
	var conns sync.Map
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.accepted++
			s.mu.Unlock()
			if closeAtOnce {
				c.Close()
				continue
			}
			conns.Store(c, nil)
			s.mu.Lock()
			s.open++
			s.maxOpen = max(s.maxOpen, s.open)
			s.mu.Unlock()
			wg.Go(func() {
				n, _ := io.Copy(io.Discard, c)
				c.Close()
				s.mu.Lock()
				s.open--
				s.bytes += int(n)
				s.mu.Unlock()
			})
		}
	})
	return s
}

func (s *pathServer) stats() (open, maxOpen, accepted, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.maxOpen, s.accepted, s.bytes
}

// onLoopback listens on 127.0.0.1.
func onLoopback(lc *net.ListenConfig) (net.Listener, error) {
	return lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
}

// inLab listens on the server of lab.
func inLab(lab *netlab.Lab) func(lc *net.ListenConfig) (net.Listener, error) {
	return func(lc *net.ListenConfig) (ln net.Listener, err error) {
		err = lab.Server(func() error {
			ln, err = lc.Listen(context.Background(), "tcp4", net.JoinHostPort(lab.ServerAddr().String(), "0"))
			return err
		})
		return ln, err
	}
}

// pathProcess is keepalive path running as a process of its own.
type pathProcess struct {
	wait func() (runResult, time.Duration) // waits for its end
	pid  int
}

// startPath runs "keepalive path" with args as a helper process; in, if
// not nil, starts it (lab.Client: in the lab's client namespace, since the
// search dials from goroutines of its own, which only a whole process
// keeps inside a namespace). Its standard error goes to stderr if not nil.
func startPath(t *testing.T, in func(func() error) error, stderr *os.File, args ...string) pathProcess {
	t.Helper()
	var errOut bytes.Buffer
	// With -race, a process that exits with status 0 waits a second for
	// races at exit, after the search has closed every connection and
	// ended every goroutine of its own.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	o := testproc.Opts{Env: []string{helperEnv + "=run", "GORACE=" + gorace}, Args: append([]string{"path"}, args...), In: in, Stderr: &errOut}
	if stderr != nil {
		o.Stderr = stderr
	}
	start := time.Now()
	h, err := testproc.Start(t, o)
	require.NoError(t, err)
	return pathProcess{pid: h.Cmd.Process.Pid, wait: func() (runResult, time.Duration) {
		out, _ := io.ReadAll(h.Stdout)
		h.Cmd.Wait()
		return runResult{h.Cmd.ProcessState.ExitCode(), string(out), errOut.String()}, time.Since(start)
	}}
}

// runPath runs "keepalive path" as startPath does and waits for its end.
func runPath(t *testing.T, in func(func() error) error, stderr *os.File, args ...string) (runResult, time.Duration) {
	t.Helper()
	return startPath(t, in, stderr, args...).wait()
}

// checkReport checks a report of keepalive path for a path whose timeout
// was measured: its first line, then lines matching the patterns, then
// exactly what keepalive suggest prints for the longest silence kept.
func checkReport(t *testing.T, out, first string, lines []string, survived time.Duration, addr string) {
	t.Helper()
	head, rest, ok := strings.Cut(out, measuredHeader(survived))
	require.True(t, ok, "no Config part in:\n%s", out)
	got := strings.Split(strings.TrimSuffix(head, "\n"), "\n")
	require.Len(t, got, len(lines)+1, "lines of %q", head)
	assert.Equal(t, first, got[0])
	for i, re := range lines {
		assert.Regexp(t, "^"+re+"$", got[i+1])
	}
	assert.Equal(t, suggestOutput(t, survived, pathDetect, addr), rest)
}

// waitClosed waits up to 2s for s to hold no connection, and reports
// whether it does.
func waitClosed(s *pathServer) bool {
	for end := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if open, _, _, _ := s.stats(); open == 0 {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

// TestPathLoopback runs keepalive path against servers on loopback, which
// keep every flow: -json with -flows and -detect, an address that refuses,
// a server that closes connections at once, and an interrupt. (The
// report is checked in the lab, and the examples run it on loopback.)
func TestPathLoopback(t *testing.T) {
	t.Parallel()
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		srv := startPathServer(t, onLoopback, false)
		r, took := runPath(t, nil, nil, "-json", "-flows", "4", "-max", "3s", "-detect", "30s", srv.addr)
		t.Logf("keepalive path -json -flows 4 -max 3s -detect 30s, %v: %s", took.Round(time.Millisecond), r.stdout)
		assert.Equal(t, exitOK, r.code)
		assert.Empty(t, r.stderr)
		var j map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &j))
		c, err := keepalive.Suggest(3*time.Second, 30*time.Second)
		require.NoError(t, err)
		elapsed, err := time.ParseDuration(fmt.Sprint(j["elapsed"]))
		require.NoError(t, err)
		assert.GreaterOrEqual(t, elapsed, 3*time.Second, "elapsed")
		assert.Less(t, elapsed, took, "elapsed")
		delete(j, "elapsed")
		// -flows 4: the search tests 3s and 1s, with 2 reserves, where
		// it would test 1s, 2s and 3s.
		assert.Equal(t, map[string]any{
			"address": srv.addr, "session": "", "survived": "3s", "died": "0s", "lower_bound": true, "cause": "none", "end": "none", "spoke": false, "heard": "0s",
			"flows": 4.0, "passes": 1.0, "retests": 0.0, "spurious": 0.0, "unaccepted": 0.0, "refused": 0.0, "resent": 0.0, "detect": "30s", "suggest": c.String(),
		}, j)
		_, maxOpen, accepted, _ := srv.stats()
		assert.Equal(t, 4, accepted)
		assert.LessOrEqual(t, maxOpen, 4)
	})

	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		closed, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := closed.Addr().String()
		require.NoError(t, closed.Close())
		start := time.Now()
		r := runArgs(context.Background(), "path", addr)
		took := time.Since(start)
		assert.Equal(t, exitFail, r.code)
		assert.Empty(t, r.stdout)
		assert.Equal(t, "keepalive path: "+addr+" refused the connection: dial tcp "+addr+": connect: connection refused\n", r.stderr)
		assert.Less(t, took, time.Second)
	})

	t.Run("server closes at once", func(t *testing.T) {
		t.Parallel()
		srv := startPathServer(t, onLoopback, true)
		r := runArgs(context.Background(), "path", "-max", "3s", srv.addr)
		assert.Equal(t, exitFail, r.code)
		assert.Empty(t, r.stdout)
		assert.Regexp(t, `^keepalive path: `+regexp.QuoteMeta(srv.addr)+` closed or reset a connection \S+ after it opened, before it was idle for a second: it may limit connections from one client \(lower -flows, now 5\), or not hold idle connections at all\n$`, r.stderr)
	})

	t.Run("interrupted", func(t *testing.T) {
		t.Parallel()
		srv := startPathServer(t, onLoopback, false)
		flows, _, err := idletimeout.Plan(idletimeout.Options{Max: 30 * time.Second})
		require.NoError(t, err)
		p := startPath(t, nil, nil, "-max", "30s", srv.addr)
		// The flow tested after 1s of silence is answered a little
		// after 1s.
		time.Sleep(1500 * time.Millisecond)
		require.NoError(t, syscall.Kill(p.pid, syscall.SIGINT))
		r, took := p.wait()
		t.Logf("interrupted after %v: %s", took.Round(time.Millisecond), r.stderr)
		assert.Equal(t, exitFail, r.code)
		assert.Empty(t, r.stdout)
		assert.Equal(t, "keepalive path: search for the idle timeout of "+srv.addr+" stopped: context canceled; by then a flow was kept after 1s of silence, none lost\n", r.stderr)
		// Every flow but the two reserves, which are dialed about 2.5s
		// after the start.
		_, _, accepted, bytes := srv.stats()
		assert.Equal(t, flows-2, accepted)
		assert.Zero(t, bytes, "application data sent")
		open, _, _, _ := srv.stats()
		assert.True(t, waitClosed(srv), "%d connections still open after the interrupt", open)
	})
}

// TestPathLab runs keepalive path through firewalls of the lab: one that
// drops forgotten flows, with the report and the progress drawn on a
// terminal; one that resets them, with -json, too soon for a Config; and one that loses every
// packet, for an address that does not answer.
func TestPathLab(t *testing.T) {
	t.Parallel()
	t.Run("drop, on a terminal", func(t *testing.T) {
		t.Parallel()
		const timeout = 4 * time.Second
		lab := netlab.New(t, netlab.Options{ConntrackTimeout: timeout, Tag: "kapath"})
		srv := startPathServer(t, inLab(lab), false)
		master, slave := openPTY(t)
		term := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(master) // EIO once no one holds the slave
			term <- string(b)
		}()
		r, took := runPath(t, lab.Client, slave, "-max", "10s", "-count", "1", srv.addr)
		slave.Close()
		drawn := <-term
		syns := lab.ClientStat("TcpExt:TCPSynRetrans")
		t.Logf("keepalive path -max 10s -count 1, firewall forgetting after %v, %v (%d SYNs sent again):\n%s", timeout, took.Round(time.Millisecond), syns, r.stdout)
		t.Logf("terminal: %q", drawn)
		require.Equal(t, exitOK, r.code)
		checkReport(t, r.stdout, "path to "+srv.addr+": the idle timeout is more than 3s, at most 4s", []string{
			`kept: +3s of silence \(a keepalive probe sent after it was answered\)`,
			`lost: +4s of silence \(drop\): the keepalive probes went unanswered, on two more connections too; something on the path forgets idle flows without a word`,
			`took: +\d+\.\d+s, 12 connections, 1 pass(; .*)?`,
		}, 3*time.Second, srv.addr)
		// -count 1: the flow tested at 4s is declared dead 1s after its
		// probe, and the reserve that tests 4s again 1s after its own,
		// dialed 1.5s after the flows (10 of them, one every 5ms): about
		// 6.6s, where the default count of 2 takes 8.6s. The allowance
		// is idletimeout's own: 0.5s, and 1s for each SYN sent again.
		m := regexp.MustCompile(`took: +(\S+),`).FindStringSubmatch(r.stdout)
		require.NotNil(t, m)
		elapsed, err := time.ParseDuration(m[1])
		require.NoError(t, err)
		bound := timeout + time.Second + 2*time.Second + 500*time.Millisecond + 500*time.Millisecond + time.Duration(syns)*time.Second
		t.Logf("answer after %v; bound %v", elapsed, bound)
		assert.LessOrEqual(t, elapsed, bound, "time to the answer with -count 1")

		// The header, the progress redrawn in place with the bounds as
		// they are learned, then erased.
		assert.True(t, strings.HasPrefix(drawn, "keepalive path: "+srv.addr+": up to 12 connections open at once, 1 pass at most; sending keepalive probes only. Interrupt to stop.\r\n\r"), "%q", drawn)
		assert.Regexp(t, `\r0s: \d+ connections? open; nothing known yet\x1b\[K`, drawn)
		assert.Regexp(t, `\r[3-9]s: \d+ connections? open; kept 3s of silence, none lost yet\x1b\[K`, drawn)
		assert.True(t, strings.HasSuffix(drawn, "\x1b[K\r\x1b[K"), "erased at the end: %q", drawn)
		_, _, _, bytes := srv.stats()
		assert.Zero(t, bytes, "application data sent")
	})

	t.Run("reset, json", func(t *testing.T) {
		t.Parallel()
		lab := netlab.New(t, netlab.Options{ConntrackTimeout: 3 * time.Second, Reset: true, Tag: "kapath"})
		srv := startPathServer(t, inLab(lab), false)
		r, took := runPath(t, lab.Client, nil, "-json", "-max", "10s", srv.addr)
		t.Logf("keepalive path -json -max 10s, firewall resetting after 3s, %v: %s", took.Round(time.Millisecond), r.stdout)
		assert.Equal(t, exitOK, r.code)
		assert.Empty(t, r.stderr)
		var j map[string]any
		require.NoError(t, json.Unmarshal([]byte(r.stdout), &j))
		// 2s is too short a silence for any Config to keep the flow.
		_, serr := keepalive.Suggest(2*time.Second, pathDetect)
		require.Error(t, serr)
		// The reset is believed once a second flow, tested after the
		// same silence, is reset too.
		for k, v := range map[string]any{
			"address": srv.addr, "survived": "2s", "died": "3s", "lower_bound": false, "cause": "reset", "end": "probe-reset", "heard": "0s",
			"flows": 12.0, "passes": 1.0, "detect": "2m0s", "suggest_error": lib(serr),
		} {
			assert.Equal(t, v, j[k], k)
		}
		assert.NotContains(t, j, "suggest")
	})

	t.Run("no answer", func(t *testing.T) {
		t.Parallel()
		lab := netlab.New(t, netlab.Options{Loss: 100, Tag: "kapath"})
		srv := startPathServer(t, inLab(lab), false)
		r, took := runPath(t, lab.Client, nil, "-timeout", "1s", srv.addr)
		t.Logf("keepalive path -timeout 1s through a firewall losing every packet: %v: %s", took.Round(time.Millisecond), r.stderr)
		assert.Equal(t, exitFail, r.code)
		assert.Empty(t, r.stdout)
		assert.Equal(t, "keepalive path: "+srv.addr+" did not answer within 1s: dial tcp "+srv.addr+": i/o timeout\n", r.stderr)
		assert.Less(t, took, 2*time.Second)
		_, _, accepted, _ := srv.stats()
		assert.Zero(t, accepted)
	})
}

// openPTY opens a pseudo-terminal, its master and its slave, closed at
// cleanup.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		skipOutsideCI(t, "no pseudo-terminal: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0), "unlockpt")
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	require.NoError(t, err, "ptsname")
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { slave.Close() })
	return master, slave
}
