package cgrouptest

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Mount returns where the cgroup v2 hierarchy is mounted, from
// /proc/self/mountinfo: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a hybrid one. It fails on a host with cgroup
// v1 only.
func Mount() (string, error) {
	dir, ok, err := mountOf("cgroup2")
	if err == nil && !ok {
		err = errors.New("no cgroup v2 hierarchy is mounted (/proc/self/mountinfo has no cgroup2)")
	}
	return dir, err
}

// V1 returns a directory of a cgroup v1 hierarchy, if one is mounted.
func V1() (string, bool) {
	dir, ok, _ := mountOf("cgroup")
	return dir, ok
}

// mountOf returns where the first filesystem of type fstype is mounted,
// from /proc/self/mountinfo.
func mountOf(fstype string) (string, bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == fstype && len(fields) > 4 {
				return fields[4], true, nil
			}
		}
	}
	return "", false, sc.Err()
}

var seq atomic.Int64

// New makes a cgroup of the test's own under the cgroup v2 hierarchy's
// root, named for the test process and a sequence number, and removes it
// at cleanup, with any cgroup below it, once the processes left in it are
// killed. It fails the test where that cannot be done, and skips it
// (failing it when CI is set) without root or cgroup v2.
func New(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "making a cgroup needs root")
	}
	root, err := Mount()
	if err != nil {
		Skip(t, "%v", err)
	}
	dir := filepath.Join(root, fmt.Sprintf("keepalive-test-%d-%d", os.Getpid(), seq.Add(1)))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("making a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := remove(dir); err != nil {
			t.Errorf("removing cgroup %s: %v", dir, err)
		}
	})
	return dir
}

// Sub makes the cgroup name below parent, which New made and removes.
func Sub(t testing.TB, parent, name string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("making a cgroup: %v", err)
	}
	return dir
}

// remove kills the processes in the cgroup at dir and below, and removes
// the cgroups, deepest first.
func remove(dir string) error {
	var dirs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	deadline := time.Now().Add(30 * time.Second)
	for i := len(dirs) - 1; i >= 0; i-- {
		for {
			pids, _ := procs(dirs[i])
			for _, pid := range pids {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			err := os.Remove(dirs[i])
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return nil
}

func procs(dir string) ([]int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Lock holds, until the test ends, a lock that every test that loads the
// project's BPF programs takes, in any test binary: while a test holds
// it, the project's BPF objects in the kernel are its own.
func Lock(t testing.TB) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "keepalive-bpf-tests.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatalf("the BPF tests' lock: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("the BPF tests' lock: %v", err)
	}
	t.Cleanup(func() { f.Close() })
}

// Skip skips the test with the reason, or fails it when the environment
// variable CI is set: in CI every test must run.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
