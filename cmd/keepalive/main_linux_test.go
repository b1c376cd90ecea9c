package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testproc"
)

// The test binary doubles as a helper process, so that the commands act on
// processes the tests started, and as the command itself, run as another
// process (as another user, or as a server that Prometheus scrapes).
// TestMain runs the helper instead of the tests when helperEnv is set.
const helperEnv = "KEEPALIVE_TEST_HELPER" // "hold" (testproc.Hold), or "run" to run the command with the arguments

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		code := m.Run()
		testproc.Cleanup()
		os.Exit(code)
	case "hold":
		os.Exit(testproc.Hold())
	case "run":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], osEnv())
		stop()
		os.Exit(code)
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// holding is what a hold helper reports.
type holding = testproc.Holding

// startHold starts a "hold" helper named name (empty: the test binary's
// name) with pairs connections whose dialed ends carry config (text, or
// "off"). pairs and config may name several groups: "2|3" and
// "idle=30s|idle=600s".
func startHold(t testing.TB, name string, pairs, config string) holding {
	t.Helper()
	h, err := tryStartHold(t, name, pairs, config)
	require.NoError(t, err)
	return h
}

// tryStartHold is startHold for a goroutine other than the test's.
func tryStartHold(t testing.TB, name string, pairs, config string) (holding, error) {
	spec := testproc.HoldSpec{Name: name}
	ps, cs := strings.Split(pairs, "|"), strings.Split(config, "|")
	if len(ps) != len(cs) {
		return holding{}, fmt.Errorf("%d groups of pairs, %d Configs", len(ps), len(cs))
	}
	for i, p := range ps {
		n, err := strconv.Atoi(p)
		if err != nil {
			return holding{}, err
		}
		spec.Groups = append(spec.Groups, testproc.Group{Pairs: n, Config: cs[i]})
	}
	_, h, err := testproc.StartHold(t, []string{helperEnv + "=hold"}, nil, spec)
	return h, err
}

// spawn runs start on the thread that starts every helper process.
func spawn(start func() error) error { return testproc.Spawn(start) }

// testBinary returns the path of this test binary; public when another
// user must run it.
func testBinary(t testing.TB, public bool) string {
	t.Helper()
	path, err := testproc.Binary(public)
	require.NoError(t, err)
	return path
}

// skipOutsideCI skips the test with the reason, or fails it when the
// environment variable CI is set: in CI every test must run.
func skipOutsideCI(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
