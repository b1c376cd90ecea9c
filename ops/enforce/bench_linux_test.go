package enforce_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

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
