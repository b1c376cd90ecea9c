package bpfsock

import (
	"net/netip"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/cgrouptest"
)

// TestProgramsLoad builds every kind of program a policy can have and
// has the kernel's verifier accept it.
func TestProgramsLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "loading BPF programs needs root")
	}
	// Policy programs: the tests that count the project's objects must not
	// see them.
	cgrouptest.Lock(t)
	k, err := LoadKernel()
	require.NoError(t, err)
	require.NoError(t, k.Probe())
	shared, err := NewShared()
	require.NoError(t, err)
	defer shared.Close()
	counts, err := newCounts()
	require.NoError(t, err)
	defer counts.Close()
	m := &Maps{Shared: shared, Counts: counts}
	dump, err := k.DumpIter(shared)
	require.NoError(t, err)
	dump.Close()
	for _, tc := range []struct {
		name string
		p    Policy
	}{
		{"zero", Policy{Cgroup: 1, ID: 2}},
		{"all", Policy{Cgroup: 1, ID: 2, Values: Values{Idle: 60, Interval: 10, Count: 5, UserTimeout: 110000}}},
		{"off", Policy{Cgroup: 1, ID: 2, Values: Values{Off: true, Idle: 60}}},
		{"program wins", Policy{Cgroup: 1, ID: 2, Values: Values{Idle: 60, Count: 3}, ProgramWins: true}},
		{"filters", Policy{Cgroup: 1, ID: 2, Values: Values{Idle: 60}, Filter: Filter{
			Remote: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("::/0")},
			Ports:  []uint16{5432, 443},
		}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			progs, err := k.LoadPrograms(&tc.p, m)
			require.NoError(t, err)
			progs.Close()
		})
	}
}

func skipOutsideCI(t testing.TB, format string, args ...any) {
	t.Helper()
	cgrouptest.Skip(t, format, args...)
}
