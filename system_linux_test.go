package keepalive_test

import (
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/netlab"
)

// systemLabTag marks the network namespaces of the system tests.
const systemLabTag = "kasys"

// procSysInt reads an integer from /proc/sys/NAME, in the network namespace
// of the calling thread.
func procSysInt(name string) (int, error) {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// modelTimeout is the kernel's tcp_model_timeout (net/ipv4/tcp_timer.c)
// for boundary retries, in its own terms: linear_backoff_thresh =
// ilog2(rto_max / TCP_RTO_MIN), and the time of boundary exponentially
// backed-off retransmissions from there.
func modelTimeout(boundary int, rtoMax time.Duration) time.Duration {
	const rtoBase = 200 * time.Millisecond // TCP_RTO_MIN
	thresh := bits.Len64(uint64(rtoMax/rtoBase)) - 1
	if boundary <= thresh {
		return time.Duration(2<<boundary-1) * rtoBase
	}
	return time.Duration(2<<thresh-1)*rtoBase + time.Duration(boundary-thresh)*rtoMax
}

// TestSystemDefaultsHost checks SystemDefaults against the sysctl files of
// this machine, read here without the package.
func TestSystemDefaultsHost(t *testing.T) {
	var want [3]int
	for i, name := range []string{"net/ipv4/tcp_keepalive_time", "net/ipv4/tcp_keepalive_intvl", "net/ipv4/tcp_keepalive_probes"} {
		v, err := procSysInt(name)
		require.NoError(t, err)
		want[i] = v
	}
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	t.Logf("net.ipv4.tcp_keepalive_time, _intvl, _probes: %v", want)
	assert.Equal(t, keepalive.Config{
		Idle:     time.Duration(want[0]) * time.Second,
		Interval: time.Duration(want[1]) * time.Second,
		Count:    want[2],
	}, sys)
}

// TestRetransmitTimeoutHost checks RetransmitTimeout against the kernel's
// formula applied to this machine's sysctl files.
func TestRetransmitTimeoutHost(t *testing.T) {
	retries, err := procSysInt("net/ipv4/tcp_retries2")
	require.NoError(t, err)
	rtoMax := 120 * time.Second
	if ms, err := procSysInt("net/ipv4/tcp_rto_max_ms"); err == nil {
		rtoMax = time.Duration(ms) * time.Millisecond
	} else {
		require.ErrorIs(t, err, os.ErrNotExist)
	}
	got, err := keepalive.RetransmitTimeout()
	require.NoError(t, err)
	want := modelTimeout(retries, rtoMax)
	t.Logf("net.ipv4.tcp_retries2 %d, tcp_rto_max %v: %v", retries, rtoMax, got)
	assert.Equal(t, want, got)
}

func TestSysctlConf(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    keepalive.Config
		want string
	}{
		{"every field", keepalive.Config{Idle: 60 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 75 * time.Second}, `# TCP keepalive: idle=60s,interval=5s,count=3,user-timeout=75s
net.ipv4.tcp_keepalive_time = 60
net.ipv4.tcp_keepalive_intvl = 5
net.ipv4.tcp_keepalive_probes = 3
# UserTimeout 75s has no sysctl: TCP_USER_TIMEOUT is set on each socket only
`},
		{"no user timeout", keepalive.Config{Idle: 2 * time.Minute, Interval: 30 * time.Second, Count: 4}, `# TCP keepalive: idle=120s,interval=30s,count=4
net.ipv4.tcp_keepalive_time = 120
net.ipv4.tcp_keepalive_intvl = 30
net.ipv4.tcp_keepalive_probes = 4
`},
		{"zero fields", keepalive.Config{Interval: 10 * time.Second, UserTimeout: 1500 * time.Millisecond}, `# TCP keepalive: interval=10s,user-timeout=1500ms
# Idle is zero: net.ipv4.tcp_keepalive_time is left as it is
net.ipv4.tcp_keepalive_intvl = 10
# Count is zero: net.ipv4.tcp_keepalive_probes is left as it is
# UserTimeout 1500ms has no sysctl: TCP_USER_TIMEOUT is set on each socket only
`},
		{"zero Config", keepalive.Config{}, `# TCP keepalive: the zero Config, which leaves every system default
# Idle is zero: net.ipv4.tcp_keepalive_time is left as it is
# Interval is zero: net.ipv4.tcp_keepalive_intvl is left as it is
# Count is zero: net.ipv4.tcp_keepalive_probes is left as it is
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.SysctlConf()
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	t.Run("invalid", func(t *testing.T) {
		got, err := keepalive.Config{Idle: 1500 * time.Millisecond}.SysctlConf()
		assert.EqualError(t, err, "keepalive: Idle 1.5s is not a whole number of seconds")
		assert.Empty(t, got)
	})

	// Each line names a sysctl of this machine: the system defaults come
	// back as the values the files hold.
	t.Run("host", func(t *testing.T) {
		sys, err := keepalive.SystemDefaults()
		require.NoError(t, err)
		conf, err := sys.SysctlConf()
		require.NoError(t, err)
		var n int
		for _, line := range strings.Split(strings.TrimSpace(conf), "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			name, value, ok := strings.Cut(line, " = ")
			require.True(t, ok, "line %q", line)
			want, err := procSysInt(strings.ReplaceAll(name, ".", "/"))
			require.NoError(t, err, "line %q", line)
			assert.Equal(t, strconv.Itoa(want), value, "line %q", line)
			n++
		}
		assert.Equal(t, 3, n, "sysctl lines in\n%s", conf)
	})
}

// applySysctlConf loads conf with sysctl(8), as `sysctl --system` loads
// /etc/sysctl.d, into the network namespace of the calling thread. It skips
// the test when sysctl is not installed, except in CI.
func applySysctlConf(t *testing.T, conf string) func() error {
	t.Helper()
	path, err := exec.LookPath("sysctl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("sysctl is not installed (Debian package procps): %v", err)
		}
		t.Skipf("sysctl is not installed (Debian package procps): %v", err)
	}
	file := filepath.Join(t.TempDir(), "60-keepalive.conf")
	require.NoError(t, os.WriteFile(file, []byte(conf), 0o644))
	return func() error {
		// The child inherits the namespace of the thread that starts it.
		out, err := exec.Command(path, "-p", file).CombinedOutput()
		if err != nil {
			return fmt.Errorf("sysctl -p: %v: %s", err, out)
		}
		return nil
	}
}

// TestSystemInNamespace sets the sysctls in a network namespace of its own
// and checks that SystemDefaults and RetransmitTimeout read them there, and
// that the lines of SysctlConf, loaded by sysctl(8), set what they say.
func TestSystemInNamespace(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t, netlab.Options{Tag: systemLabTag})
	write := func(values map[string]int) func() error {
		return func() error {
			for name, v := range values {
				if err := os.WriteFile("/proc/sys/"+name, []byte(strconv.Itoa(v)), 0); err != nil {
					return err
				}
			}
			return nil
		}
	}
	_, rtoMaxErr := os.Stat("/proc/sys/net/ipv4/tcp_rto_max_ms")

	for _, tt := range []struct {
		retries, rtoMaxMS int // rtoMaxMS zero: left at its default
		want              time.Duration
	}{
		{0, 0, 200 * time.Millisecond},
		{3, 0, 3 * time.Second},                 // 0.2 + 0.4 + 0.8 + 1.6
		{8, 0, 102200 * time.Millisecond},       // RFC 1122's 100 seconds
		{9, 0, 204600 * time.Millisecond},       // the last doubling: 102.4s
		{10, 0, 324600 * time.Millisecond},      // then 120s each
		{15, 0, 924600 * time.Millisecond},      // the default
		{15, 120000, 924600 * time.Millisecond}, // the default, written
		{15, 1000, 14400 * time.Millisecond},    // 0.2 + 0.4 + 0.8 + 13 × 1s
		{5, 5000, 11200 * time.Millisecond},     // 0.2 + 0.4 + 0.8 + 1.6 + 3.2 + 5
		{100, 0, (204600 + 91*120000) * time.Millisecond},
	} {
		t.Run(fmt.Sprintf("tcp_retries2=%d,tcp_rto_max_ms=%d", tt.retries, tt.rtoMaxMS), func(t *testing.T) {
			values := map[string]int{"net/ipv4/tcp_retries2": tt.retries}
			if tt.rtoMaxMS != 0 {
				if rtoMaxErr != nil {
					skipOutsideCI(t, "this kernel has no tcp_rto_max_ms (Linux 6.15): %v", rtoMaxErr)
				}
				values["net/ipv4/tcp_rto_max_ms"] = tt.rtoMaxMS
			} else if rtoMaxErr == nil {
				values["net/ipv4/tcp_rto_max_ms"] = 120000
			}
			var got time.Duration
			require.NoError(t, lab.Client(func() error {
				if err := write(values)(); err != nil {
					return err
				}
				var err error
				got, err = keepalive.RetransmitTimeout()
				return err
			}))
			assert.Equal(t, tt.want, got)
			rtoMax := 120 * time.Second
			if tt.rtoMaxMS != 0 {
				rtoMax = time.Duration(tt.rtoMaxMS) * time.Millisecond
			}
			assert.Equal(t, modelTimeout(tt.retries, rtoMax), got, "the kernel's formula")
		})
	}

	t.Run("SysctlConf", func(t *testing.T) {
		before := keepalive.Config{Idle: 7000 * time.Second, Interval: 70 * time.Second, Count: 7}
		for _, c := range []keepalive.Config{
			{Idle: 60 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 75 * time.Second},
			{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127},
			{Idle: time.Second, Interval: time.Second, Count: 1},
			{Interval: 10 * time.Second},
			{},
		} {
			t.Run(c.String(), func(t *testing.T) {
				conf, err := c.SysctlConf()
				require.NoError(t, err)
				apply := applySysctlConf(t, conf)
				var got keepalive.Config
				require.NoError(t, lab.Client(func() error {
					if err := write(map[string]int{
						"net/ipv4/tcp_keepalive_time":   int(before.Idle / time.Second),
						"net/ipv4/tcp_keepalive_intvl":  int(before.Interval / time.Second),
						"net/ipv4/tcp_keepalive_probes": before.Count,
					})(); err != nil {
						return err
					}
					if err := apply(); err != nil {
						return err
					}
					var err error
					got, err = keepalive.SystemDefaults()
					return err
				}))
				want := c
				want.UserTimeout = 0 // no sysctl
				if want.Idle == 0 {
					want.Idle = before.Idle
				}
				if want.Interval == 0 {
					want.Interval = before.Interval
				}
				if want.Count == 0 {
					want.Count = before.Count
				}
				assert.Equal(t, want, got, "SystemDefaults after sysctl -p of\n%s", conf)
			})
		}
	})
}

// TestRetransmitTimeoutKernel shows what RetransmitTimeout promises: a
// connection without a user timeout whose data stays unacknowledged is
// closed with ETIMEDOUT once RetransmitTimeout has passed since the first
// retransmission, at the next retransmission: after the write by more than
// RetransmitTimeout, and by at most one more retransmission timeout (at
// most tcp_rto_max_ms) and the first one.
func TestRetransmitTimeoutKernel(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/sys/net/ipv4/tcp_rto_max_ms"); err != nil {
		skipOutsideCI(t, "this kernel has no tcp_rto_max_ms (Linux 6.15), which keeps this test short: %v", err)
	}
	const (
		retries = 3
		rtoMax  = time.Second
	)
	lab := netlab.New(t, netlab.Options{Tag: systemLabTag})
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(lab.ServerAddr().String(), "0"))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()

	var conn net.Conn
	var bound time.Duration
	require.NoError(t, lab.Client(func() error {
		for name, v := range map[string]int{"net/ipv4/tcp_retries2": retries, "net/ipv4/tcp_rto_max_ms": int(rtoMax / time.Millisecond)} {
			if err := os.WriteFile("/proc/sys/"+name, []byte(strconv.Itoa(v)), 0); err != nil {
				return err
			}
		}
		var err error
		if bound, err = keepalive.RetransmitTimeout(); err != nil {
			return err
		}
		// Keepalive off: only retransmission may close the connection.
		d := net.Dialer{KeepAlive: -1, Timeout: 5 * time.Second}
		conn, err = d.Dial("tcp4", ln.Addr().String())
		return err
	}))
	t.Cleanup(func() { conn.Close() })
	peer, ok := <-accepted
	require.True(t, ok, "accept")
	t.Cleanup(func() { peer.Close() })
	require.Equal(t, 2400*time.Millisecond, bound, "0.2s + 0.4s + 0.8s + 1s")

	lab.CutFlows()
	start := time.Now()
	_, err := conn.Write([]byte("unacknowledged"))
	require.NoError(t, err)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(bound+10*time.Second)))
	_, err = conn.Read(make([]byte, 1))
	elapsed := time.Since(start)
	require.NotErrorIs(t, err, io.EOF)
	assert.True(t, errors.Is(err, syscall.ETIMEDOUT), "want ETIMEDOUT; got %v", err)
	// The first retransmission timeout on this path is a little over
	// TCP_RTO_MIN; 1s covers it and the scheduling of this goroutine.
	upper := bound + rtoMax + time.Second
	t.Logf("tcp_retries2 %d, tcp_rto_max_ms %v: RetransmitTimeout %v; closed %v after the write (bound %v..%v): %v",
		retries, rtoMax, bound, elapsed.Round(time.Millisecond), bound, upper, err)
	assert.Greater(t, elapsed, bound)
	assert.LessOrEqual(t, elapsed, upper)
}

// TestDefaultsErrors checks the errors of every function whose answer
// comes from the system defaults, where the sysctl files are missing or
// hold no number: each starts with "keepalive:", names the file, and wraps
// the cause (os.ErrNotExist, strconv.ErrSyntax). The files are hidden in a
// mount namespace of the test's own, on an OS thread that runs only the
// calls checked and ends with them.
func TestDefaultsErrors(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	conn, _ := pair(t, ln, plainDial)
	funcs := []struct {
		name string
		call func() error
	}{
		{"SystemDefaults", func() error { _, err := keepalive.SystemDefaults(); return err }},
		{"RetransmitTimeout", func() error { _, err := keepalive.RetransmitTimeout(); return err }},
		{"DetectionTime", func() error { _, err := keepalive.Config{Idle: time.Minute}.DetectionTime(); return err }},
		{"WithUserTimeout", func() error { _, err := keepalive.Config{Count: 3}.WithUserTimeout(); return err }},
		{"Set", func() error { return keepalive.Set(conn, keepalive.Config{Interval: 5 * time.Second}) }},
	}
	const dir = "/proc/sys/net/ipv4"
	for _, tt := range []struct {
		name  string
		files map[string]string // the files of dir, in place of the real ones
		is    error
		text  string // in every error
	}{
		{"missing", nil, os.ErrNotExist, "no such file or directory"},
		{"not a number", map[string]string{
			"tcp_keepalive_time": "x\n", "tcp_keepalive_intvl": "x\n", "tcp_keepalive_probes": "x\n", "tcp_retries2": "x\n",
		}, strconv.ErrSyntax, `invalid syntax`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			errs := inHiddenSysctls(t, dir, tt.files, func() []error {
				var errs []error
				for _, f := range funcs {
					errs = append(errs, f.call())
				}
				return errs
			})
			for i, f := range funcs {
				err := errs[i]
				if !assert.Error(t, err, f.name) {
					continue
				}
				assert.True(t, strings.HasPrefix(err.Error(), "keepalive: "), "%s: %q", f.name, err)
				assert.Equal(t, 1, strings.Count(err.Error(), "keepalive: "), "%s: the prefix once: %q", f.name, err)
				assert.Contains(t, err.Error(), dir+"/tcp_", f.name)
				assert.Contains(t, err.Error(), tt.text, f.name)
				assert.ErrorIs(t, err, tt.is, f.name)
			}
		})
	}
	// Out of the namespace, nothing was changed.
	_, err := keepalive.SystemDefaults()
	require.NoError(t, err)
}

// inHiddenSysctls runs f on an OS thread of its own, in a mount namespace of
// its own where an empty tmpfs, holding only files, hides dir, and returns
// what f returns. The thread ends with f: a goroutine that exits locked to
// its thread takes the thread, and its namespace, with it. It skips the
// test (fails it in CI) where a mount namespace cannot be made.
func inHiddenSysctls(t *testing.T, dir string, files map[string]string, f func() []error) []error {
	t.Helper()
	type result struct {
		setup error
		errs  []error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends here
		setup := func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return os.NewSyscallError("unshare CLONE_NEWNS", err)
			}
			// Keep the mounts below from propagating to the host.
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return os.NewSyscallError("mount --make-rprivate /", err)
			}
			if err := unix.Mount("keepalive-test", dir, "tmpfs", 0, "size=64k"); err != nil {
				return os.NewSyscallError("mount tmpfs on "+dir, err)
			}
			for name, text := range files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
					return err
				}
			}
			return nil
		}
		if err := setup(); err != nil {
			done <- result{setup: err}
			return
		}
		done <- result{errs: f()}
	}()
	r := <-done
	if errors.Is(r.setup, os.ErrPermission) {
		skipOutsideCI(t, "a mount namespace cannot be made here: %v", r.setup)
	}
	require.NoError(t, r.setup, "hiding %s", dir)
	return r.errs
}
