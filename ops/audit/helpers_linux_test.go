package audit_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// The test binary doubles as a helper process that holds connections, so
// that audit and apply act on processes the tests started. TestMain runs
// the helper instead of the tests when helperEnv is set.
const (
	helperEnv       = "AUDIT_TEST_HELPER" // "hold" or "probe"
	helperPairsEnv  = "AUDIT_TEST_PAIRS"  // connections to open to itself
	helperConfigEnv = "AUDIT_TEST_CONFIG" // Config text for the dialed ends; "off" for keepalive off
	helperExtrasEnv = "AUDIT_TEST_EXTRAS" // "1": also hold non-TCP descriptors and a blocking TCP socket
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		code := m.Run()
		testproc.Cleanup()
		os.Exit(code)
	case "hold":
		os.Exit(hold())
	case "probe":
		os.Exit(probe())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// holding is what a "hold" helper reports once its connections are open.
type holding struct {
	PID  int // the helper's pid
	Port int // its listener's port on 127.0.0.1
	// Descriptors of the extras: a UDP socket, a unix socket, a pipe's
	// read end, and the dialed end of a TCP connection that is in blocking
	// mode.
	UDP, Unix, Pipe, Blocking int
}

// hold opens the requested connections to a listener of its own on
// loopback, prints a holding as JSON, and holds everything open until its
// standard input closes. The dialed ends carry the Config of
// helperConfigEnv; the accepted ends have keepalive off.
func hold() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "hold:", err)
		return 1
	}
	n, err := strconv.Atoi(os.Getenv(helperPairsEnv))
	if err != nil {
		return fail(err)
	}
	dial := (&net.Dialer{KeepAlive: -1}).DialContext
	if text := os.Getenv(helperConfigEnv); text != "off" {
		c, err := keepalive.ParseConfig(text)
		if err != nil {
			return fail(err)
		}
		dial = (&keepalive.Dialer{Config: c}).DialContext
	}
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	var keep []any // everything held open
	accepted := make(chan error, 1)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				accepted <- err
				return
			}
			keep = append(keep, c)
		}
		accepted <- nil
	}()
	var dialed []net.Conn
	for range n {
		c, err := dial(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			return fail(err)
		}
		dialed = append(dialed, c)
	}
	if err := <-accepted; err != nil {
		return fail(err)
	}
	h := holding{PID: os.Getpid(), Port: ln.Addr().(*net.TCPAddr).Port, UDP: -1, Unix: -1, Pipe: -1, Blocking: -1}
	if os.Getenv(helperExtrasEnv) == "1" {
		if h.UDP, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0); err != nil {
			return fail(err)
		}
		if h.Unix, err = unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0); err != nil {
			return fail(err)
		}
		var p [2]int
		if err := unix.Pipe(p[:]); err != nil {
			return fail(err)
		}
		h.Pipe = p[0]
		// A blocking TCP socket, as a C program has: the raw socket
		// call, no O_NONBLOCK.
		if h.Blocking, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0); err != nil {
			return fail(err)
		}
		if err := unix.Connect(h.Blocking, &unix.SockaddrInet4{Port: h.Port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return fail(err)
		}
		c, err := ln.Accept()
		if err != nil {
			return fail(err)
		}
		keep = append(keep, c)
	}
	json.NewEncoder(os.Stdout).Encode(h)
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(dialed)
	runtime.KeepAlive(ln)
	return 0
}

// helper is a running helper process.
type helper struct {
	holding
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startHold starts a "hold" helper with pairs connections whose dialed
// ends carry config (text, or "off"), as the user cred when not nil, and
// stops it at cleanup.
func startHold(t testing.TB, pairs int, config string, extras bool, cred *syscall.Credential) *helper {
	t.Helper()
	env := []string{helperEnv + "=hold", helperPairsEnv + "=" + strconv.Itoa(pairs), helperConfigEnv + "=" + config}
	if extras {
		env = append(env, helperExtrasEnv+"=1")
	}
	h := &helper{}
	out := startHelper(t, env, cred, &h.cmd, &h.stdin)
	require.NoError(t, json.Unmarshal(out, &h.holding), "helper said %q", out)
	return h
}

// startHelper starts the test binary as a helper with env added, reads the
// first line it prints, and registers its end: its standard input is
// closed, which makes it exit, and it is waited for.
func startHelper(t testing.TB, env []string, cred *syscall.Credential, cmdp **exec.Cmd, stdinp *io.WriteCloser) []byte {
	t.Helper()
	cmd := exec.Command(testBinary(t, cred != nil))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, spawn(cmd.Start))
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	require.NoError(t, err, "helper exited before it was ready")
	*cmdp, *stdinp = cmd, stdin
	return line
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
// tests' own getsockopt.
func readFrom(t testing.TB, pid, fd int) sockopts.Values {
	t.Helper()
	v, err := sockopts.Read(dupFrom(t, pid, fd))
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

// needRoot skips (in CI fails) a test that needs root.
func needRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "needs root: %s", why)
	}
}

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %q", err, b)
	}
	return nil
}
