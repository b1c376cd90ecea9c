// Package testproc starts the helper processes that tests of the command
// and of ops/audit run: copies of the test binary that hold connections for
// the code under test to audit, apply to or scrape. On Linux it also holds
// those connections ([Hold]), the same way for both.
package testproc

import (
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

var (
	spawnOnce sync.Once
	spawns    chan func()
)

// Spawn runs start, which starts a process, on one OS thread that lives as
// long as the test binary: a child's parent-death signal fires when the
// thread that started it ends, and the runtime ends threads that a
// goroutine left locked.
func Spawn(start func() error) error {
	spawnOnce.Do(func() {
		spawns = make(chan func())
		go func() {
			runtime.LockOSThread()
			for f := range spawns {
				f()
			}
		}()
	})
	done := make(chan error, 1)
	spawns <- func() { done <- start() }
	return <-done
}

var (
	publicOnce sync.Once
	publicDir  string
	publicErr  error
)

// Binary returns the path of the running test binary; with public true, a
// copy in a folder every user may read, for a helper that runs as another
// user. [Cleanup] removes the copy.
func Binary(public bool) (string, error) {
	self, err := os.Executable()
	if err != nil || !public {
		return self, err
	}
	publicOnce.Do(func() {
		if publicDir, publicErr = os.MkdirTemp("", "keepalive-test-"); publicErr != nil {
			return
		}
		if publicErr = os.Chmod(publicDir, 0o755); publicErr != nil {
			return
		}
		var b []byte
		if b, publicErr = os.ReadFile(self); publicErr != nil {
			return
		}
		publicErr = os.WriteFile(filepath.Join(publicDir, filepath.Base(self)), b, 0o755)
	})
	if publicErr != nil {
		return "", publicErr
	}
	return filepath.Join(publicDir, filepath.Base(self)), nil
}

// Cleanup removes the public copy of the test binary, if Binary made one.
// TestMain calls it once the tests have run.
func Cleanup() {
	if publicDir != "" {
		os.RemoveAll(publicDir)
	}
}
