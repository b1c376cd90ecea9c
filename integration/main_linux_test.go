package integration_test

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/keepalive-go/keepalive/internal/testserver"
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

// hostSpawn starts processes from the spawner, in the test binary's own
// network namespace.
func hostSpawn(start func() error) error {
	done := make(chan error, 1)
	spawns <- func() { done <- start() }
	return <-done
}

// server is a started server, or why it could not be started.
type server struct {
	Addr string // host:port on loopback
	err  error
}

// need returns s for a test, skipping or failing the test when s could not
// be started.
func (s *server) need(t testing.TB) *server {
	t.Helper()
	var u testserver.Unavailable
	if errors.As(s.err, &u) {
		testserver.Skip(t, u.Reason)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s
}

// startOnFreePort runs start with a free port, and again with another if the
// server failed (another process may have taken the port in between).
func startOnFreePort(start func(port int) (*server, error)) *server {
	var err error
	for range 3 {
		var port int
		if port, err = testserver.FreePort(); err != nil {
			break
		}
		var s *server
		if s, err = start(port); err == nil {
			return s
		}
		var u testserver.Unavailable
		if errors.As(err, &u) {
			break
		}
	}
	return &server{err: err}
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
