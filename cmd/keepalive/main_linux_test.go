package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
)

// The test binary doubles as a helper process, so that the commands act on
// processes the tests started, and as the command itself, run as another
// process (as another user, or as a server that Prometheus scrapes).
// TestMain runs the helper instead of the tests when helperEnv is set.
const (
	helperEnv       = "KEEPALIVE_TEST_HELPER" // "hold", or "run" to run the command with the arguments
	helperPairsEnv  = "KEEPALIVE_TEST_PAIRS"  // hold: connections to open to itself, per group: "2|3"
	helperConfigEnv = "KEEPALIVE_TEST_CONFIG" // hold: Config text of each group's dialed ends ("off" for keepalive off), "|" between groups
	helperNameEnv   = "KEEPALIVE_TEST_NAME"   // hold: the command name to take (/proc/PID/comm)
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		code := m.Run()
		testproc.Cleanup()
		os.Exit(code)
	case "hold":
		os.Exit(hold())
	case "run":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], osEnv())
		stop()
		os.Exit(code)
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// holding is what a "hold" helper prints once its connections are open.
type holding struct {
	PID  int // the helper's pid
	Port int // its listener's port on 127.0.0.1
	// Dialed holds, for each group, the local addresses of its dialed
	// ends.
	Dialed [][]string
}

// hold opens the requested connections to a listener of its own on
// loopback, in groups, prints a holding as JSON, and holds them open until
// its standard input closes. The dialed ends of each group carry its
// Config of helperConfigEnv; the accepted ends have keepalive off.
func hold() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "hold:", err)
		return 1
	}
	if name := os.Getenv(helperNameEnv); name != "" {
		// /proc/self is the thread group leader, whose name is the
		// process's command.
		if err := os.WriteFile("/proc/self/comm", []byte(name), 0); err != nil {
			return fail(err)
		}
	}
	pairs, configs := strings.Split(os.Getenv(helperPairsEnv), "|"), strings.Split(os.Getenv(helperConfigEnv), "|")
	if len(pairs) != len(configs) {
		return fail(fmt.Errorf("%d groups of pairs, %d Configs", len(pairs), len(configs)))
	}
	n := 0
	for _, p := range pairs {
		k, err := strconv.Atoi(p)
		if err != nil {
			return fail(err)
		}
		n += k
	}
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	var keep []net.Conn
	accepted := make(chan error, 1)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			keep = append(keep, c)
		}
		accepted <- nil
	}()
	h := holding{PID: os.Getpid(), Port: ln.Addr().(*net.TCPAddr).Port}
	var dialed []net.Conn
	for i, text := range configs {
		dial := (&net.Dialer{KeepAlive: -1}).DialContext
		if text != "off" {
			c, err := keepalive.ParseConfig(text)
			if err != nil {
				return fail(err)
			}
			dial = (&keepalive.Dialer{Config: c}).DialContext
		}
		k, _ := strconv.Atoi(pairs[i])
		var group []string
		for range k {
			c, err := dial(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				return fail(err)
			}
			dialed = append(dialed, c)
			group = append(group, c.LocalAddr().String())
		}
		h.Dialed = append(h.Dialed, group)
	}
	if err := <-accepted; err != nil {
		return fail(err)
	}
	json.NewEncoder(os.Stdout).Encode(h)
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(dialed)
	runtime.KeepAlive(ln)
	return 0
}

// helperOpts says how to start a helper.
type helperOpts struct {
	env  []string
	args []string
	cred *syscall.Credential // nil: as this process's user

	// in, if not nil, starts the helper in place of spawn: lab.Client
	// starts it in the lab's client namespace, which all its threads
	// inherit. It then has no parent-death signal, which would fire as
	// soon as the lab's thread ends; cleanup still stops it.
	in func(start func() error) error

	// stderr is where the helper's standard error goes; nil means this
	// process's.
	stderr io.Writer
}

// startHelper starts the test binary as a helper, and stops it at cleanup:
// its standard input is closed, which ends a "hold" helper, and it is sent
// SIGTERM, which ends a "run" one. It returns the helper and its standard
// output.
func startHelper(t testing.TB, o helperOpts) (*exec.Cmd, *bufio.Reader, error) {
	cmd := exec.Command(testBinary(t, o.cred != nil), o.args...)
	cmd.Env = append(os.Environ(), o.env...)
	cmd.Stderr = os.Stderr
	if o.stderr != nil {
		cmd.Stderr = o.stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: o.cred}
	start := spawn
	if o.in != nil {
		cmd.SysProcAttr.Pdeathsig = 0
		start = o.in
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := start(cmd.Start); err != nil {
		return nil, nil, err
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd, bufio.NewReader(stdout), nil
}

// startHold starts a "hold" helper named name (empty: the test binary's
// name) with pairs connections whose dialed ends carry config (text, or
// "off"). pairs and config may name several groups: "2|3" and
// "idle=30s|idle=600s".
func startHold(t testing.TB, name string, pairs, config string) holding {
	t.Helper()
	h, err := tryStartHold(t, name, pairs, config)
	require.NoError(t, err)
	return h
}

// tryStartHold is startHold for a goroutine other than the test's.
func tryStartHold(t testing.TB, name string, pairs, config string) (holding, error) {
	var h holding
	_, stdout, err := startHelper(t, helperOpts{env: []string{
		helperEnv + "=hold", helperPairsEnv + "=" + pairs, helperConfigEnv + "=" + config, helperNameEnv + "=" + name,
	}})
	if err != nil {
		return h, err
	}
	line, err := stdout.ReadBytes('\n')
	if err != nil {
		return h, fmt.Errorf("helper with %s pairs exited before it was ready: %w", pairs, err)
	}
	if err := json.Unmarshal(line, &h); err != nil {
		return h, fmt.Errorf("helper said %q: %w", line, err)
	}
	return h, nil
}

// spawn runs start on the thread that starts every helper process.
func spawn(start func() error) error { return testproc.Spawn(start) }

// testBinary returns the path of this test binary; public when another
// user must run it.
func testBinary(t testing.TB, public bool) string {
	t.Helper()
	path, err := testproc.Binary(public)
	require.NoError(t, err)
	return path
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
