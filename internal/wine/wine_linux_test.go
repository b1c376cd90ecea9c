package wine_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/wine"
)

// TestKeepaliveValsUnderWine runs TestKeepaliveVals, this package's Windows
// test, under Wine, and reads from the Linux side what the kernel holds for
// each socket it holds: SIO_KEEPALIVE_VALS must reach the Linux socket,
// rounded to whole seconds, with the probe count and user timeout left at
// the system's.
func TestKeepaliveValsUnderWine(t *testing.T) {
	e := wine.Setup(t)
	exe := e.BuildTest(t, ".")
	p := e.Start(t, ".", exe, "-test.run=^TestKeepaliveVals$", "-test.v")

	def := wine.Values{
		KeepAlive: true,
		Idle:      sysctlSeconds(t, "net/ipv4/tcp_keepalive_time"),
		Interval:  sysctlSeconds(t, "net/ipv4/tcp_keepalive_intvl"),
		Count:     sysctlInt(t, "net/ipv4/tcp_keepalive_probes"),
	}
	seen := map[string]bool{}
	out, code := p.EachHold(t, func(h wine.HoldInfo) {
		name, end, _ := strings.Cut(h.Tag, "/")
		seen[h.Tag] = true
		for _, c := range keepaliveVals {
			if c.name != name {
				continue
			}
			want := def
			want.KeepAlive = c.on
			if c.wantIdle != 0 {
				want.Idle = c.wantIdle
			}
			if c.wantInterval != 0 {
				want.Interval = c.wantInterval
			}
			assert.Equal(t, want, p.Socket(t, h.Local, h.Remote), "%s (%d ms, %d ms), %s end", name, c.idleMS, c.intervalMS, end)
			return
		}
		t.Errorf("hold %s: no such case", h)
	})
	require.Equal(t, 0, code, "the Windows test failed:\n%s", out)
	for _, c := range keepaliveVals {
		for _, end := range []string{"dialed", "accepted"} {
			assert.True(t, seen[c.name+"/"+end], "the Windows test held no %s/%s socket:\n%s", c.name, end, out)
		}
	}
}

// TestExitCode checks that a Windows program's exit code reaches Linux.
func TestExitCode(t *testing.T) {
	e := wine.Setup(t)
	exe := e.BuildTest(t, ".")
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"-test.run=^$"}, 0},
		{[]string{"-test.bogus-flag"}, 2},
	} {
		out, code := e.Run(t, ".", exe, c.args...)
		assert.Equal(t, c.want, code, "%v:\n%s", c.args, out)
	}
}

func sysctlInt(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	require.NoError(t, err)
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return n
}

func sysctlSeconds(t *testing.T, name string) time.Duration {
	return time.Duration(sysctlInt(t, name)) * time.Second
}
