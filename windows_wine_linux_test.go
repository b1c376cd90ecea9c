package keepalive_test

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/wine"
)

// TestWindowsUnderWine runs this package's tests, built for Windows, under
// Wine, which like Windows before 10 version 1709 has neither TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT nor TCP_MAXRT, so that the package sets Idle
// and Interval with SIO_KEEPALIVE_VALS and cannot read them back: every
// test must pass there, none skipped. For every socket the Windows tests
// (TestWindows* in the *_windows_test.go files) hold, it reads from Linux
// what the kernel holds: keepalive on or off as the Config says, its Idle
// and Interval, each zero one at Windows' default (2 h, 1 s), and the
// probe count and user timeout left at Linux's own, which Wine does not
// touch.
//
// It needs the Debian packages wine, wine64 and gcc-mingw-w64-x86-64, and
// skips without them (fails when CI is set).
func TestWindowsUnderWine(t *testing.T) {
	e := wine.Setup(t)
	exe := e.BuildTest(t, ".")
	p := e.Start(t, ".", exe, "-test.v", "-test.count=1")

	count := sysctlInt(t, "net/ipv4/tcp_keepalive_probes")
	seen := map[string]bool{}
	out, code := p.EachHold(t, func(h wine.HoldInfo) {
		source, c, err := parseWineTag(h.Tag)
		if !assert.NoError(t, err, "hold %s", h) {
			return
		}
		assert.Contains(t, wineSources, source, "hold %s: unknown source", h)
		seen[h.Tag] = true
		want := wine.Values{
			KeepAlive: !c.Off,
			Idle:      c.WithDefaults(windowsDefaults).Idle,
			Interval:  c.WithDefaults(windowsDefaults).Interval,
			Count:     count,
		}
		assert.Equal(t, want, p.Socket(t, h.Local, h.Remote), "%s", h)
	})
	require.Equal(t, 0, code, "the Windows tests failed:\n%s", out)

	for _, source := range wineSources {
		for _, c := range wineConfigs {
			if strings.HasPrefix(source, "Disable/") {
				if c.Off {
					continue
				}
				c.Off = true
			}
			if strings.HasPrefix(source, "SetAfterDisable/") && c.Off {
				continue
			}
			assert.True(t, seen[wineTag(source, c)], "no socket held for %s:\n%s", wineTag(source, c), out)
		}
	}
	// Every test ran and passed, none skipped: the Windows tests that
	// hold sockets, and those of every platform.
	ran := regexp.MustCompile(`(?m)^\s*--- (PASS|SKIP|FAIL): (\S+) `).FindAllStringSubmatch(out, -1)
	tests := map[string]string{}
	for _, m := range ran {
		tests[m[2]] = m[1]
		assert.Equal(t, "PASS", m[1], "%s:\n%s", m[2], out)
	}
	for _, name := range []string{
		"TestWindowsSet", "TestWindowsGetNew", "TestWindowsDisable", "TestWindowsUnsupported", "TestWindowsNotTCP",
		"TestWindowsDialAndAccept", "TestWindowsControl", "TestWindowsValidate", "TestWindowsSystemDefaults",
		"TestPlatform", "TestConfigValidate", "TestFromKeepAliveConfig", "TestSet", "TestSetGetRoundTrip", "TestGetNew",
		"TestDisable", "TestDialAndAcceptValues", "TestListenConfigPerAccept", "TestConfigControl", "TestParsePostgres",
		"TestWinsockNumbers", "TestWinsockSet",
	} {
		assert.Equal(t, "PASS", tests[name], "%s:\n%s", name, out)
	}
	t.Logf("%d sockets read from Linux", len(seen))
}

// sysctlInt reads the integer sysctl at /proc/sys/name.
func sysctlInt(t testing.TB, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + name)
	require.NoError(t, err)
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	return n
}
