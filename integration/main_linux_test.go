package integration_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The servers are started at most once per test binary, by the first test
// that needs each, and stopped by TestMain after the tests. Each runs as a
// child whose parent-death signal is set, so that it dies with the test
// binary even when a panic or -timeout ends it before TestMain can stop it.

var (
	// tmpRoot holds every server's files; TestMain removes it.
	tmpRoot string

	stopMu sync.Mutex
	stops  []func() // in start order; TestMain runs them in reverse
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "keepalive-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Servers that drop root (postgres) must reach their own folder.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	tmpRoot = dir
	go spawner()
	code := m.Run()
	stopAll()
	os.RemoveAll(tmpRoot)
	os.Exit(code)
}

func stopAll() {
	stopMu.Lock()
	defer stopMu.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	stops = nil
}

func onStop(f func()) {
	stopMu.Lock()
	stops = append(stops, f)
	stopMu.Unlock()
}

// spawns carries process starts to the spawner.
var spawns = make(chan func())

// spawner starts every server from one OS thread that lives as long as the
// test binary. The parent-death signal fires when the thread that started a
// child exits, and the Go runtime ends threads that a goroutine left locked
// (as network-namespace code does), so a child started from an arbitrary
// thread could be killed in mid-test.
func spawner() {
	runtime.LockOSThread()
	for f := range spawns {
		f()
	}
}

// spawnFunc runs start, which starts a process, on a thread that outlives
// the process, and returns start's error.
type spawnFunc func(start func() error) error

// hostSpawn starts processes from the spawner, in the test binary's own
// network namespace.
func hostSpawn(start func() error) error {
	done := make(chan error, 1)
	spawns <- func() { done <- start() }
	return <-done
}

// unavailable skips the test with the reason a server cannot be run here.
// When CI is set the servers are required: it fails the test instead.
func unavailable(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: the servers must run)", reason)
	}
	t.Skip(reason)
}

// errUnavailable marks a start failure that means "cannot run here" (a
// missing binary, no user to run it as) rather than a broken server.
type errUnavailable struct{ reason string }

func (e errUnavailable) Error() string { return e.reason }

// server is a started server, or why it could not be started.
type server struct {
	Addr string // host:port on loopback
	err  error
}

// need returns s for a test, skipping or failing the test when s could not
// be started.
func (s *server) need(t testing.TB) *server {
	t.Helper()
	var u errUnavailable
	if errors.As(s.err, &u) {
		unavailable(t, u.reason)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s
}

// process is a server process that is the test binary's child.
type process struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// startProcess starts cmd through spawn, with its output in logPath and sig
// as its parent-death signal, and registers its stop with register: stop
// (if not nil, else SIGTERM) asks it to shut down, and SIGKILL follows if it
// has not exited within 15 s.
func startProcess(name string, cmd *exec.Cmd, logPath string, sig syscall.Signal, stop func() error, spawn spawnFunc, register func(func())) (*process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = sig
	cmd.SysProcAttr.Setpgid = true // keep terminal signals to the test binary
	if err := spawn(cmd.Start); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	register(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		if stop != nil {
			if err := stop(); err != nil {
				fmt.Fprintf(os.Stderr, "stopping %s: %v\n", name, err)
			}
		} else {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			fmt.Fprintf(os.Stderr, "%s did not stop within 15s; killing it\n", name)
			p.kill()
		}
	})
	return p, nil
}

// kill ends the process at once and waits for it.
func (p *process) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// waitReady calls ready until it succeeds, the process exits, or a minute
// has passed.
func (p *process) waitReady(ready func(ctx context.Context) error) error {
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := ready(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%s exited (%v) before it was ready: %v\n%s", p.name, p.err, err, p.tail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after a minute: %v\n%s", p.name, err, p.tail())
		}
	}
}

// tail returns the end of the process's log.
func (p *process) tail() string {
	return tailFile(p.log)
}

func tailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// startOnFreePort runs start with a free port, and again with another if the
// server failed (another process may have taken the port in between).
func startOnFreePort(start func(port int) (*server, error)) *server {
	var err error
	for range 3 {
		var port int
		if port, err = freePort(); err != nil {
			break
		}
		var s *server
		if s, err = start(port); err == nil {
			return s
		}
		var u errUnavailable
		if errors.As(err, &u) {
			break
		}
	}
	return &server{err: err}
}

// lookPath finds a binary on PATH or else in the given glob patterns,
// taking the highest version a pattern matches.
func lookPath(name string, patterns ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, pat := range patterns {
		m, _ := filepath.Glob(pat)
		if len(m) == 0 {
			continue
		}
		sort.Slice(m, func(i, j int) bool { return versionOf(m[i]) < versionOf(m[j]) })
		return m[len(m)-1], nil
	}
	return "", errUnavailable{fmt.Sprintf("%s not found on PATH or in %v", name, patterns)}
}

// versionOf returns the first number among the path's folder names, for
// /usr/lib/postgresql/15/bin/initdb 15.
func versionOf(path string) float64 {
	for dir := filepath.Dir(path); dir != "/" && dir != "."; dir = filepath.Dir(dir) {
		if v, err := strconv.ParseFloat(filepath.Base(dir), 64); err == nil {
			return v
		}
	}
	return 0
}

// timed runs start, which starts a server, and reports on standard error
// how long it took (go test shows it with -v or on failure), so that the
// suite's time can be kept in view.
func timed[S any](name string, start func() S) S {
	t0 := time.Now()
	s := start()
	fmt.Fprintf(os.Stderr, "integration: started %s in %v\n", name, time.Since(t0).Round(time.Millisecond))
	return s
}

// run runs a set-up command, with its output in the error.
func run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", cmd, err, bytes.TrimSpace(out))
	}
	return nil
}
