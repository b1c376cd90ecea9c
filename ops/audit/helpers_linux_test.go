package audit_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// The test binary doubles as a helper process that holds connections, so
// that audit and apply act on processes the tests started. TestMain runs
// the helper instead of the tests when helperEnv is set.
const helperEnv = "AUDIT_TEST_HELPER" // "hold" (testproc.Hold), "probe", "accept", "churn" or "auditor"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		code := m.Run()
		testproc.Cleanup()
		os.Exit(code)
	case "hold":
		os.Exit(testproc.Hold())
	case "probe":
		os.Exit(probe())
	case "accept":
		os.Exit(acceptHelper())
	case "churn":
		os.Exit(churnHelper())
	case "auditor":
		os.Exit(auditor())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// helper is a running hold helper.
type helper struct {
	testproc.Holding
	cmd   *exec.Cmd
	stdin io.WriteCloser
	proc  *testproc.Helper
}

// startHold starts a hold helper with pairs connections whose dialed ends
// carry config (text, or "off"), and with extras the non-TCP descriptors
// and a blocking TCP socket (testproc.HoldSpec), as the user cred when not
// nil; it is stopped at cleanup.
func startHold(t testing.TB, pairs int, config string, extras bool, cred *syscall.Credential) *helper {
	t.Helper()
	h, err := tryStartHold(t, pairs, config, extras, cred)
	require.NoError(t, err)
	return h
}

// tryStartHold is startHold for a goroutine other than the test's.
func tryStartHold(t testing.TB, pairs int, config string, extras bool, cred *syscall.Credential) (*helper, error) {
	spec := testproc.HoldSpec{Groups: []testproc.Group{{Pairs: pairs, Config: config}}, Extras: extras}
	p, held, err := testproc.StartHold(t, []string{helperEnv + "=hold"}, cred, spec)
	if err != nil {
		return nil, err
	}
	return &helper{Holding: held, cmd: p.Cmd, stdin: p.Stdin, proc: p}, nil
}

// dupFrom duplicates descriptor fd of process pid into the test with
// pidfd_getfd, independently of the audit package, as an *os.File closed
// at cleanup.
func dupFrom(t testing.TB, pid, fd int) *os.File {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	require.NoError(t, err)
	defer unix.Close(pidfd)
	d, err := unix.PidfdGetfd(pidfd, fd, 0)
	require.NoError(t, err)
	f := os.NewFile(uintptr(d), fmt.Sprintf("pid %d fd %d", pid, fd))
	t.Cleanup(func() { f.Close() })
	return f
}

// readFrom reads the options of process pid's descriptor fd with the
// tests' own getsockopt, on a duplicate made with pidfd_getfd.
func readFrom(t testing.TB, pid, fd int) sockopts.Values {
	t.Helper()
	v, err := sockopts.ReadFrom(pid, fd)
	require.NoError(t, err)
	return v
}

// valuesOf returns what the audit reported for c in sockopts' terms.
func valuesOf(c audit.Conn) sockopts.Values {
	return sockopts.Values{
		KeepAlive:   c.Enabled,
		Idle:        c.Config.Idle,
		Interval:    c.Config.Interval,
		Count:       c.Config.Count,
		UserTimeout: c.Config.UserTimeout,
	}
}

// fdFlags returns the file status flags of process pid's descriptor fd as
// /proc/PID/fdinfo shows them, without touching the descriptor.
func fdFlags(t testing.TB, pid, fd int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, fd))
	require.NoError(t, err)
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no flags in fdinfo: %s", b)
	return ""
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

// methods are the two ways audit reads and apply changes the sockets of
// other processes; the tests of each run for both.
var methods = []audit.Method{audit.MethodBPF, audit.MethodPidfd}

// forMethods runs f as a subtest for each of methods; the BPF iterator's
// is skipped (failed in CI) without root.
func forMethods(t *testing.T, f func(t *testing.T, m audit.Method)) {
	t.Helper()
	for _, m := range methods {
		t.Run(m.String(), func(t *testing.T) {
			if m == audit.MethodBPF {
				needRoot(t, "the BPF iterator needs CAP_BPF and CAP_PERFMON")
			}
			f(t, m)
		})
	}
}

// needRoot skips (in CI fails) a test that needs root.
func needRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "needs root: %s", why)
	}
}
