package enforce_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/cgrouptest"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// benchPairs is how many connections, at most, the benchmarks hold in the
// cgroup (ENFORCE_BENCH_PAIRS; both ends of each are the cgroup's), spread
// over helpers of pairsPerHelper each, under RLIMIT_NOFILE.
const (
	benchPairs     = 50000
	pairsPerHelper = 8000
)

// holdPairs has helpers in the lab's cgroup hold n connections.
func holdPairs(b *testing.B, l *lab, n int) {
	b.Helper()
	for n > 0 {
		k := min(n, pairsPerHelper)
		c := startConns(b, l.cgroup, connSpec{Listen: []string{"127.0.0.1:0"}}, 0)
		for k > 0 {
			step := min(k, 1000)
			c.dial(0, step)
			k -= step
			n -= step
		}
	}
}

func benchSizes(b *testing.B) []int {
	max := benchPairs
	if s := os.Getenv("ENFORCE_BENCH_PAIRS"); s != "" {
		var err error
		max, err = strconv.Atoi(s)
		require.NoError(b, err)
	}
	sizes := []int{0}
	for _, n := range []int{1000, 10000, 50000} {
		if n <= max {
			sizes = append(sizes, n)
		}
	}
	return sizes
}

// BenchmarkEnforce replaces the policy on a cgroup whose processes hold
// 2×pairs connection ends: each run loads the programs, swaps them into
// the links and runs the iterator, which sets every end again (each run
// is a new policy). Compare the sizes for the iterator's cost per socket.
func BenchmarkEnforce(b *testing.B) {
	for _, pairs := range benchSizes(b) {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) {
			l := newLab(b)
			holdPairs(b, l, pairs)
			// The first run attaches; the others replace.
			start := time.Now()
			l.enforce(enforce.Options{Config: policy})
			first := time.Since(start)
			b.ResetTimer()
			for i := range b.N {
				res := l.enforce(enforce.Options{Config: keepalive.Config{Idle: time.Duration(10+i%100) * time.Second}})
				if len(res.Existing) != 2*pairs {
					b.Fatalf("set %d connection ends; want %d", len(res.Existing), 2*pairs)
				}
			}
			b.ReportMetric(float64(first.Microseconds())/1000, "first-ms")
		})
	}
}

// BenchmarkDump runs the dump iterator over the caller's namespace while
// the cgroup's processes hold 2×pairs connection ends, and reads them all.
func BenchmarkDump(b *testing.B) {
	for _, pairs := range benchSizes(b) {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) {
			l := newLab(b)
			holdPairs(b, l, pairs)
			l.enforce(enforce.Options{Config: policy})
			k, err := bpfsock.LoadKernel()
			require.NoError(b, err)
			shared, err := bpfsock.ProjectIn(l.bpffs).OpenShared()
			require.NoError(b, err)
			defer shared.Close()
			prog, err := k.DumpIter(shared)
			require.NoError(b, err)
			defer prog.Close()
			nss, err := bpfsock.Namespaces(l.cgroup)
			require.NoError(b, err)
			defer func() {
				for _, ns := range nss {
					ns.Close()
				}
			}()
			b.ResetTimer()
			for range b.N {
				socks, err := bpfsock.RunDump(context.Background(), prog, nss)
				require.NoError(b, err)
				if n := len(socks[nss[0]]); n < 2*pairs {
					b.Fatalf("dumped %d sockets; want at least %d", n, 2*pairs)
				}
			}
		})
	}
}

// BenchmarkConnect dials and accepts connections on loopback, one after
// another, from a process in a cgroup with a policy (policy=on, the
// policy every test uses, all five options) and in one without
// (policy=none); with -count, the two take turns, so that a change in the
// machine's load falls on both. The benchmark process itself moves into
// the cgroup for the loop, and back. Each reports, per connection (both
// ends, dialled and accepted):
//
//   - ns/op and cpu-ns/op, the process's user and system CPU time
//     (getrusage), which holds what the kernel does for its sockets,
//     the policy's programs included;
//   - mallocs/op, which the policy cannot change;
//   - with the policy, exactly: the sock_ops and setsockopt programs' runs
//     (sockops-runs/op, setsockopt-runs/op) and the time spent in them
//     (bpf-ns/op), from the kernel's BPF statistics, which the benchmark
//     turns on for both cases (BPF_ENABLE_STATS; they cost each program
//     run two clock reads); and the connections the policy counts as set,
//     which must be exactly both ends of every one.
func BenchmarkConnect(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "policy=none"
		if on {
			name = "policy=on"
		}
		b.Run(name, func(b *testing.B) {
			l := newLab(b)
			cg := cgrouptest.New(b)
			if on {
				cg = l.cgroup
				l.enforce(enforce.Options{Config: policy})
			}
			stats, err := ebpf.EnableStats(unix.BPF_STATS_RUN_TIME)
			require.NoError(b, err)
			defer stats.Close()
			enterCgroup(b, cg)
			ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
			require.NoError(b, err)
			defer ln.Close()
			d := &net.Dialer{KeepAlive: -1}
			connect := func() {
				c, err := d.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				a, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				c.Close()
				a.Close()
			}
			connect() // warm-up
			var before []*ebpf.ProgramStats
			progs := policyPrograms(b, l, on)
			for _, p := range progs {
				s, err := p.Stats()
				require.NoError(b, err)
				before = append(before, s)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu, mallocs := processCPU(b), heapMallocs()
			for range b.N {
				connect()
			}
			cpu, mallocs = processCPU(b)-cpu, heapMallocs()-mallocs
			b.StopTimer()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(mallocs)/float64(b.N), "mallocs/op")
			if !on {
				return
			}
			var bpf time.Duration
			for i, p := range progs {
				s, err := p.Stats()
				require.NoError(b, err)
				bpf += s.Runtime - before[i].Runtime
				b.ReportMetric(float64(s.RunCount-before[i].RunCount)/float64(b.N), []string{"sockops-runs/op", "setsockopt-runs/op"}[i])
			}
			b.ReportMetric(float64(bpf.Nanoseconds())/float64(b.N), "bpf-ns/op")
			ps := l.list()
			require.Len(b, ps, 1)
			if n := uint64(b.N + 1); ps[0].Counts.Dialled != n || ps[0].Counts.Accepted != n {
				b.Fatalf("the policy set %d dialled and %d accepted ends; want %d of each", ps[0].Counts.Dialled, ps[0].Counts.Accepted, n)
			}
		})
	}
}

// policyPrograms opens the sock_ops and the setsockopt programs of the
// lab's policy, if on; they are closed at cleanup.
func policyPrograms(b *testing.B, l *lab, on bool) []*ebpf.Program {
	b.Helper()
	if !on {
		return nil
	}
	ps := l.list()
	require.Len(b, ps, 1)
	pinned, err := bpfsock.ProjectIn(l.bpffs).Policy(ps[0].CgroupID).Read()
	require.NoError(b, err)
	var progs []*ebpf.Program
	for _, id := range pinned.Programs {
		p, err := ebpf.NewProgramFromID(id)
		require.NoError(b, err)
		b.Cleanup(func() { p.Close() })
		progs = append(progs, p)
	}
	return progs
}

// enterCgroup moves the benchmark process into the cgroup v2 directory
// cg, and back into its own at cleanup: the sockets it makes meanwhile are
// the cgroup's.
func enterCgroup(b *testing.B, cg string) {
	b.Helper()
	self, err := os.ReadFile("/proc/self/cgroup")
	require.NoError(b, err)
	var own string
	for _, line := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			own = rest
		}
	}
	require.NotEmpty(b, own, "the process's cgroup v2 in /proc/self/cgroup: %s", self)
	root, err := cgrouptest.Mount()
	require.NoError(b, err)
	pid := []byte(strconv.Itoa(os.Getpid()))
	require.NoError(b, os.WriteFile(filepath.Join(cg, "cgroup.procs"), pid, 0))
	b.Cleanup(func() {
		require.NoError(b, os.WriteFile(filepath.Join(root, own, "cgroup.procs"), pid, 0))
	})
}

// processCPU is the process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapMallocs is how many heap allocations the process has made so far.
func heapMallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}
