package testserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// SpawnFunc runs start, which starts a process, on a thread that outlives
// the process, and returns start's error.
type SpawnFunc func(start func() error) error

// Skip skips the test with the reason a server cannot be run here.
// When CI is set the servers are required: it fails the test instead.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: the servers must run)", reason)
	}
	t.Skip(reason)
}

// Unavailable marks a start failure that means "cannot run here" (a
// missing binary, no user to run it as) rather than a broken server.
type Unavailable struct{ Reason string }

func (e Unavailable) Error() string { return e.Reason }

// Process is a server process that is the test binary's child.
type Process struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // Wait's result, once exited is closed
}

// Start starts cmd through spawn, with its output in logPath and sig
// as its parent-death signal, and registers its stop with register: stop
// (if not nil, else SIGTERM) asks it to shut down, and SIGKILL follows if it
// has not exited within 15 s.
func Start(name string, cmd *exec.Cmd, logPath string, sig syscall.Signal, stop func() error, spawn SpawnFunc, register func(func())) (*Process, error) {
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
	p := &Process{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
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
			p.Kill()
		}
	})
	return p, nil
}

// Kill ends the process at once and waits for it.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// WaitReady calls ready until it succeeds, the process exits, or a minute
// has passed.
func (p *Process) WaitReady(ready func(ctx context.Context) error) error {
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
			return fmt.Errorf("%s exited (%v) before it was ready: %v\n%s", p.name, p.err, err, p.Tail())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after a minute: %v\n%s", p.name, err, p.Tail())
		}
	}
}

// Tail returns the end of the process's log.
func (p *Process) Tail() string {
	return TailFile(p.log)
}

// TailFile returns the last 2000 bytes of a file, or the error reading it.
func TailFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(bytes.TrimSpace(b))
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// LookPath finds a binary on PATH or else in the given glob patterns,
// taking the highest version a pattern matches.
func LookPath(name string, patterns ...string) (string, error) {
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
	return "", Unavailable{fmt.Sprintf("%s not found on PATH or in %v", name, patterns)}
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

// Run runs a set-up command, with its output in the error.
func Run(cmd *exec.Cmd) error {
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", cmd, err, bytes.TrimSpace(out))
	}
	return nil
}

// NetnsSpawn returns a SpawnFunc that starts processes in the namespace
// that run (a netlab.Lab's Client or Server) enters, from a thread that
// stays in that namespace until the test's cleanup; a process must be
// stopped before then (register its stop with t.Cleanup after this call),
// since the thread's end sends it its parent-death signal.
func NetnsSpawn(t *testing.T, run func(func() error) error) SpawnFunc {
	var ns *os.File
	require.NoError(t, run(func() error {
		var err error
		ns, err = os.Open("/proc/thread-self/ns/net")
		return err
	}))
	release := make(chan struct{})
	t.Cleanup(func() {
		close(release)
		ns.Close()
	})
	return func(start func() error) error {
		done := make(chan error, 1)
		go func() {
			// The thread is left locked, and so ends with the goroutine
			// instead of going back to the runtime in the wrong namespace.
			runtime.LockOSThread()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				done <- os.NewSyscallError("setns", err)
				return
			}
			done <- start()
			<-release
		}()
		return <-done
	}
}
