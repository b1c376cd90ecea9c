package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/idletimeout"
	"github.com/keepalive-go/keepalive/internal/netlab"
)

// runPathEnv makes the test binary run "keepalive path" with its
// arguments instead of the tests, so that a test can start it as a
// process of its own inside a lab's namespace: the search dials from
// goroutines of its own, which only a whole process keeps there.
const runPathEnv = "KEEPALIVE_TEST_RUN_PATH"

func TestMain(m *testing.M) {
	if os.Getenv(runPathEnv) == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := pathCmd(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func runPath(ctx context.Context, args ...string) runResult {
	var stdout, stderr bytes.Buffer
	code := pathCmd(ctx, args, &stdout, &stderr)
	return runResult{code, stdout.String(), stderr.String()}
}

func TestPathHelp(t *testing.T) {
	r := runPath(context.Background(), "-h")
	assert.Equal(t, 0, r.code)
	assert.Empty(t, r.stderr)
	for _, w := range []string{
		"usage: keepalive path [flags] HOST:PORT",
		"at most max(1s, 2%) apart",
		"up to 331 idle connections at once to HOST:PORT for -max 2h0m0s",
		"(-flows 50: two",
		"-max duration", "-flows int", "-interval duration", "-count int", "-detect duration", "-json", "-timeout duration",
		"Exit status",
	} {
		assert.Contains(t, r.stdout, w)
	}
}

// TestPathUsageErrors checks that a bad command line exits with status 2
// before any connection, naming the flag or the argument at fault.
func TestPathUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string // in stderr
	}{
		{nil, "keepalive path: missing HOST:PORT"},
		{[]string{"127.0.0.1:1", "127.0.0.1:2"}, `keepalive path: unexpected argument "127.0.0.1:2" after HOST:PORT`},
		{[]string{"localhost"}, `keepalive path: HOST:PORT "localhost" has no port`},
		{[]string{"localhost:"}, `keepalive path: HOST:PORT "localhost:" has no port`},
		{[]string{"-max", "1s", "127.0.0.1:1"}, "keepalive path: -max 1s is out of range 2s..32767s"},
		{[]string{"-max", "90.5s", "127.0.0.1:1"}, "keepalive path: -max 1m30.5s is not a whole number of seconds"},
		{[]string{"-max", "0", "127.0.0.1:1"}, "keepalive path: -max 0s must be positive"},
		{[]string{"-flows", "3", "127.0.0.1:1"}, "keepalive path: -flows 3 is below 4: each pass needs 2 reserves and 2 flows to test"},
		{[]string{"-interval", "500ms", "127.0.0.1:1"}, "keepalive path: -interval 500ms is not a whole number of seconds"},
		{[]string{"-count", "0", "127.0.0.1:1"}, "keepalive path: -count 0 must be positive"},
		{[]string{"-count", "128", "127.0.0.1:1"}, "keepalive path: -count 128 is out of range 1..127"},
		{[]string{"-timeout", "0", "127.0.0.1:1"}, "keepalive path: -timeout 0s must be positive"},
		{[]string{"-detect", "1s", "127.0.0.1:1"}, "keepalive path: -detect: keepalive: cannot notice a dead peer within 1s"},
		{[]string{"-json=maybe", "127.0.0.1:1"}, `keepalive path: invalid boolean value "maybe" for -json`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			start := time.Now()
			r := runPath(context.Background(), tt.args...)
			assert.Equal(t, exitUsage, r.code)
			assert.Empty(t, r.stdout)
			assert.Contains(t, r.stderr, tt.want)
			assert.Contains(t, r.stderr, "usage: keepalive path")
			assert.Less(t, time.Since(start), time.Second)
		})
	}
}

// TestPathRefused checks that an address that refuses fails at once with
// status 1.
func TestPathRefused(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := closed.Addr().String()
	require.NoError(t, closed.Close())
	r := runPath(context.Background(), addr)
	assert.Equal(t, exitFail, r.code)
	assert.Empty(t, r.stdout)
	assert.Contains(t, r.stderr, "keepalive: "+addr+" refused the connection: ")
}

// TestPrintPath checks the report for each way a search can end.
func TestPrintPath(t *testing.T) {
	for _, tt := range []struct {
		name string
		r    idletimeout.Result
		want []string
	}{
		{"drop", idletimeout.Result{Survived: 345 * time.Second, Died: 351 * time.Second, Cause: idletimeout.CauseDrop, Elapsed: 356 * time.Second, Flows: 331, Passes: 1, Retests: 1, Address: "192.0.2.1:5432"}, []string{
			"path to 192.0.2.1:5432\n",
			"  kept: 345s of silence: a keepalive probe after it was answered\n",
			"  lost: 351s of silence: the probes went unanswered (drop): something on the path forgets idle flows without a word\n",
			"  timeout: more than 345s, at most 351s\n",
			"  took: 5m56s, 331 connections, 1 pass, 1 loss re-tested (0 of them lost packets, not flows)\n",
			"\nkeepalive suggest -idle-timeout 345s -detect 120s:\n  idle=60s,interval=20s,count=3,user-timeout=120s\n",
		}},
		{"reset", idletimeout.Result{Survived: 5 * time.Second, Died: 6 * time.Second, Cause: idletimeout.CauseReset, Flows: 32, Passes: 1}, []string{
			"  lost: 6s of silence: a reset came back (reset): something on the path, or the server, rejects the flows it forgot\n",
			"  timeout: more than 5s, at most 6s\n",
		}},
		{"server-close", idletimeout.Result{Survived: 6 * time.Second, Died: 7002 * time.Millisecond, Cause: idletimeout.CauseServerClose, Flows: 32, Passes: 1}, []string{
			"  lost: 7.002s of silence: the server closed the connection itself (server-close); keepalive probes do not count for it, only data does\n",
		}},
		{"none", idletimeout.Result{Survived: 2 * time.Hour, Cause: idletimeout.CauseNone, Flows: 331, Passes: 1}, []string{
			"  lost: none in 7200s of silence (none): the path keeps idle flows at least that long\n",
			"\nkeepalive suggest -idle-timeout 7200s -detect 120s:\n  idle=60s,interval=20s,count=3,user-timeout=120s\n",
		}},
		{"server keepalive", idletimeout.Result{Survived: 15 * time.Second, Heard: 16 * time.Second, Cause: idletimeout.CauseNone, Flows: 42, Passes: 1}, []string{
			"  lost: none (none)\n",
			"  note: the server sends keepalive probes of its own within 16s of silence: they keep the path open, so no longer silence can be measured from here\n",
		}},
		{"too short", idletimeout.Result{Survived: 2 * time.Second, Died: 3 * time.Second, Cause: idletimeout.CauseDrop, Flows: 32, Passes: 2}, []string{
			"2 passes",
			"  no Config: keepalive: idle timeout 2s is too short",
		}},
		{"nothing kept", idletimeout.Result{Died: time.Second, Cause: idletimeout.CauseDrop, Flows: 32, Passes: 1}, []string{
			"  kept: no silence of 1s or more\n",
			"  timeout: at most 1s\n",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			c, serr := tt.r.Suggest(defaultDetect)
			printPath(&b, tt.r, 2*time.Hour, c, serr, defaultDetect)
			out := squeeze(b.String())
			for _, w := range tt.want {
				assert.Contains(t, out, squeeze(w))
			}
		})
	}
}

func TestProgressText(t *testing.T) {
	for _, tt := range []struct {
		p    idletimeout.Progress
		want string
	}{
		{idletimeout.Progress{Elapsed: 1500 * time.Millisecond, Pass: 1, Open: 331}, "1s  331 open  kept -  lost -"},
		{idletimeout.Progress{Elapsed: 75 * time.Second, Pass: 1, Open: 200, Survived: 74 * time.Second}, "1m15s  200 open  kept 74s  lost -"},
		{idletimeout.Progress{Elapsed: 90 * time.Second, Pass: 2, Open: 8, Survived: 60 * time.Second, Died: 70 * time.Second}, "1m30s  pass 2  8 open  kept 60s  lost 70s"},
	} {
		assert.Equal(t, tt.want, progressText(tt.p))
	}
}

// labPathServer listens in the lab's server namespace with keepalive off
// and holds every connection it accepts until the test ends.
func labPathServer(t *testing.T, lab *netlab.Lab) string {
	t.Helper()
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		lc := net.ListenConfig{KeepAlive: -1}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp4", net.JoinHostPort(lab.ServerAddr().String(), "0"))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	acceptAll(t, ln)
	return ln.Addr().String()
}

// labPathRun runs keepalive path with args as a process in the lab's
// client namespace; its standard error goes to stderr if not nil.
func labPathRun(t *testing.T, lab *netlab.Lab, stderr *os.File, args ...string) (code int, stdout, errOut string, took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), runPathEnv+"=1")
	var out, eout bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &eout
	if stderr != nil {
		cmd.Stderr = stderr
	}
	start := time.Now()
	require.NoError(t, lab.Client(cmd.Start))
	err := cmd.Wait()
	took = time.Since(start)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		require.NoError(t, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), eout.String(), took
}

// TestPathLab runs keepalive path through firewalls of the lab: the report
// with the default -max, the JSON, and the progress drawn on a terminal.
func TestPathLab(t *testing.T) {
	t.Run("report", func(t *testing.T) {
		t.Parallel()
		lab := netlab.New(t, netlab.Options{ConntrackTimeout: 8 * time.Second, Tag: "kapath"})
		addr := labPathServer(t, lab)
		code, stdout, stderr, took := labPathRun(t, lab, nil, addr)
		t.Logf("keepalive path %s, firewall forgetting after 8s, took %v:\n%s", addr, took.Round(time.Millisecond), stdout)
		assert.Equal(t, exitOK, code, "stderr: %s", stderr)
		assert.Empty(t, stderr)
		out := squeeze(stdout)
		c, err := keepalive.Suggest(7*time.Second, defaultDetect)
		require.NoError(t, err)
		for _, w := range []string{
			"path to " + addr + "\n",
			" kept: 7s of silence: a keepalive probe after it was answered\n",
			" lost: 8s of silence: the probes went unanswered (drop)",
			" timeout: more than 7s, at most 8s\n",
			", 331 connections, 1 pass",
			"\nkeepalive suggest -idle-timeout 7s -detect 120s:\n " + c.String() + "\n",
		} {
			assert.Contains(t, out, w)
		}
	})

	t.Run("json", func(t *testing.T) {
		t.Parallel()
		lab := netlab.New(t, netlab.Options{ConntrackTimeout: 4 * time.Second, Reset: true, Tag: "kapath"})
		addr := labPathServer(t, lab)
		code, stdout, stderr, _ := labPathRun(t, lab, nil, "-json", "-max", "10s", "-detect", "30s", addr)
		syns := lab.ClientStat("TcpExt:TCPSynRetrans")
		t.Logf("keepalive path -json (%d SYNs sent again): %s", syns, stdout)
		assert.Equal(t, exitOK, code, "stderr: %s", stderr)
		assert.Empty(t, stderr)
		var j map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &j))
		want, err := keepalive.Suggest(3*time.Second, 30*time.Second)
		require.NoError(t, err)
		for k, v := range map[string]any{
			"address": addr, "survived": "3s", "died": "4s", "cause": "reset", "heard": "0s",
			"flows": float64(12), "passes": float64(1), "retests": float64(0), "detect": "30s",
			"suggest": want.String(),
		} {
			assert.Equal(t, v, j[k], k)
		}
		elapsed, err := time.ParseDuration(j["elapsed"].(string))
		require.NoError(t, err)
		// Timing is checked by idletimeout's own tests; no answer can
		// come before the timeout.
		assert.GreaterOrEqual(t, elapsed, 4*time.Second)
		assert.NotContains(t, j, "suggest_error")
	})

	t.Run("progress on a terminal", func(t *testing.T) {
		t.Parallel()
		lab := netlab.New(t, netlab.Options{ConntrackTimeout: 3 * time.Second, Tag: "kapath"})
		addr := labPathServer(t, lab)
		master, slave := openPTY(t)
		term := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(master) // EIO once the last writer is gone
			term <- string(b)
		}()
		code, stdout, _, _ := labPathRun(t, lab, slave, "-max", "10s", addr)
		slave.Close()
		out := <-term
		t.Logf("terminal: %q", out)
		assert.Equal(t, exitOK, code)
		assert.Contains(t, squeeze(stdout), "kept: 2s of silence")
		assert.Contains(t, out, "keepalive path "+addr+": up to 12 connections at once, 1 pass; sending keepalive probes only. Interrupt to stop.\r\n")
		// The first connection alone, to check the address; the bounds
		// as they narrow; the answer; the line cleared before the report.
		assert.Contains(t, out, "Interrupt to stop.\r\n\r\x1b[K0s  1 open  kept -  lost -\r")
		assert.Regexp(t, regexp.MustCompile(`\r\x1b\[K\ds  \d+ open  kept 2s  lost -\r`), out)
		assert.Regexp(t, regexp.MustCompile(`\r\x1b\[K\ds  0 open  kept 2s  lost 3s\r\x1b\[K$`), out)
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

// skipOutsideCI skips the test with the reason, or fails it when the
// environment variable CI is set: in CI every test must run.
func skipOutsideCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
