package testproc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A host with 100,000 connections, for the scale tests and benchmarks of
// audit and of the exporter: ScalePairs pairs on loopback, both ends held
// by hold helpers, at most PairsPerHelper each, since one process may hold
// at most RLIMIT_NOFILE descriptors (which only CAP_SYS_RESOURCE raises
// past its hard limit).
const (
	ScalePairs     = 50000
	PairsPerHelper = 6250
)

// Pairs returns ScalePairs, or the number the environment variable env
// sets.
func Pairs(env string) (int, error) {
	s := os.Getenv(env)
	if s == "" {
		return ScalePairs, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", env, err)
	}
	return n, nil
}

// StartScale starts, all at once, hold helpers that together hold pairs
// connections whose dialed ends carry config, at most PairsPerHelper
// each and fewer if RLIMIT_NOFILE's hard limit demands it. env makes the
// test binary's TestMain call [Hold]; name is the helpers' command name
// (empty: the test binary's). It returns each helper's Holding.
func StartScale(t testing.TB, env []string, name string, pairs int, config string) ([]Holding, error) {
	t.Helper()
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return nil, err
	}
	per := min(PairsPerHelper, int(lim.Max-64)/2)
	if per <= 0 {
		return nil, fmt.Errorf("RLIMIT_NOFILE %d leaves no room for connections", lim.Max)
	}
	n := (pairs + per - 1) / per
	held := make([]Holding, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		spec := HoldSpec{Name: name, Groups: []Group{{Pairs: min(per, pairs-i*per), Config: config}}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, held[i], errs[i] = StartHold(t, env, nil, spec)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	t.Logf("%d helpers hold %d connections (%d pairs); set up in %v", n, 2*pairs, pairs, time.Since(start).Round(time.Millisecond))
	return held, nil
}

// BenchmarkSS runs ss -tnoip, the reference the scale benchmarks compare
// with, and reports its CPU time (user + system) per run as cpu-ms/op and
// the connections it listed as conns/op.
func BenchmarkSS(b *testing.B) {
	if _, err := exec.LookPath("ss"); err != nil {
		b.Skip("ss (Debian package iproute2) is not installed")
	}
	var cpu time.Duration
	var lines int
	b.ResetTimer()
	for range b.N {
		var out bytes.Buffer
		cmd := exec.Command("ss", "-tnoip")
		cmd.Stdout = &out
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		lines = bytes.Count(out.Bytes(), []byte("\n")) / 2 // -i writes a second line per socket
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(lines), "conns/op")
}
