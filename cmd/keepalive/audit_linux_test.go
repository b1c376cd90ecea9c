package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// auditPair opens a connection on loopback whose dialed end carries c and
// whose accepted end has keepalive off; both are closed at cleanup.
func auditPair(t *testing.T, c keepalive.Config) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, ch := loopback(t)
	d, err := (&keepalive.Dialer{Config: c}).Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	var a net.Conn
	select {
	case a = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("the listener accepted no connection")
	}
	require.NoError(t, a.(*net.TCPConn).SetKeepAlive(false))
	return d.(*net.TCPConn), a.(*net.TCPConn)
}

func portOf(c net.Conn) int { return c.LocalAddr().(*net.TCPAddr).Port }

// TestAuditJSON checks audit -json against getsockopt on both ends of a
// connection this test opened.
func TestAuditJSON(t *testing.T) {
	c := keepalive.Config{Idle: 45 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: time.Minute}
	dialed, accepted := auditPair(t, c)
	r := runArgs(context.Background(), "audit", "-json", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)), "-idle-timeout", "30s", "-detect", "1m")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	got := map[string]map[string]any{}
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		got[m["local"].(string)] = m
	}
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	for _, end := range []*net.TCPConn{dialed, accepted} {
		m := got[end.LocalAddr().String()]
		require.NotNil(t, m, "audit -json lists %v", end.LocalAddr())
		k, err := sockopts.Read(end)
		require.NoError(t, err)
		assert.Equal(t, float64(os.Getpid()), m["pid"])
		assert.Equal(t, strings.TrimSpace(string(comm)), m["command"])
		assert.Equal(t, end.RemoteAddr().String(), m["remote"])
		assert.Equal(t, "established", m["state"])
		assert.Equal(t, "socket", m["source"])
		assert.Equal(t, k.KeepAlive, m["enabled"])
		assert.Equal(t, k.Idle.String(), m["idle"])
		assert.Equal(t, k.Interval.String(), m["interval"])
		assert.Equal(t, float64(k.Count), m["count"])
		assert.Equal(t, k.UserTimeout.String(), m["user_timeout"])
		assert.Equal(t, float64(ownNetns()), m["netns"])
		method := "bpf" // as root, through the BPF iterator
		if os.Geteuid() != 0 {
			method = "pidfd"
		}
		assert.Equal(t, method, m["method"])
		assert.NotContains(t, m, "set_by", "no policy set it")
		for _, key := range []string{"verdict", "idle_timeout_verdict", "detect_verdict"} {
			assert.Contains(t, m, key)
		}
	}
	assert.Equal(t, "at-risk", got[dialed.LocalAddr().String()]["verdict"], "idle 45s against an idle timeout of 30s")
	assert.Equal(t, "ok", got[dialed.LocalAddr().String()]["detect_verdict"], "45s + 3 × 5s, cut at the user timeout 1m, within 1m")
	assert.Equal(t, "off", got[accepted.LocalAddr().String()]["verdict"])
}

// TestAuditTable checks the table: one group for this process, the values
// in columns, the summary.
func TestAuditTable(t *testing.T) {
	dialed, accepted := auditPair(t, keepalive.Config{Idle: 20 * time.Second, Interval: 4 * time.Second, Count: 2})
	acc, err := sockopts.Read(accepted)
	require.NoError(t, err)
	r := runArgs(context.Background(), "audit", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)), "-idle-timeout", "350s", "-detect", "30s")
	require.Equal(t, exitOK, r.code, r.stderr)
	t.Logf("stdout:\n%s", r.stdout)
	out := squeeze(r.stdout)
	for _, w := range []string{
		fmt.Sprintf("(pid %d): 2 connections\n", os.Getpid()),
		"FD LOCAL REMOTE STATE KEEPALIVE IDLE INTERVAL COUNT USER TIMEOUT DETECTS IN SOURCE SET BY VERDICT",
		fmt.Sprintf(" %v %v established on 20s 4s 2 none 28s socket - ok \n", dialed.LocalAddr(), dialed.RemoteAddr()),
		fmt.Sprintf(" %v %v established off %v %v %d none never socket - off \n", dialed.RemoteAddr(), dialed.LocalAddr(), acc.Idle, acc.Interval, acc.Count),
		"\n2 connections: 1 ok, 1 off\nchecked against an idle timeout of 5m50s and detection within 30s\n",
	} {
		assert.Contains(t, out, w)
	}
	assert.Empty(t, r.stderr, "no progress drawn when stderr is not a terminal")
}

// TestAuditKernelOnly checks the table of what the kernel shows: the
// keepalive timer, no values.
func TestAuditKernelOnly(t *testing.T) {
	dialed, _ := auditPair(t, keepalive.Config{Idle: 40 * time.Second, Interval: 4 * time.Second, Count: 2})
	r := runArgs(context.Background(), "audit", "-kernel-only", "-port", fmt.Sprint(portOf(dialed)), "-idle-timeout", "30s")
	require.Equal(t, exitOK, r.code, r.stderr)
	out := squeeze(r.stdout)
	assert.Regexp(t, fmt.Sprintf(` %v %v established on \(timer (40|39)s\) - - - - - kernel - at-risk \n`, dialed.LocalAddr(), dialed.RemoteAddr()), out)
	assert.Contains(t, out, fmt.Sprintf(" %v %v established off - - - - never kernel - off \n", dialed.RemoteAddr(), dialed.LocalAddr()))
	assert.Contains(t, out, "\n-kernel-only: values were not read from the sockets\n")
}

// TestAuditProgress checks that on a terminal an audit that is slow draws
// its progress on stderr and erases it, and one that is quick draws
// nothing.
func TestAuditProgress(t *testing.T) {
	auditPair(t, keepalive.Config{Idle: time.Minute})
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"audit", "-pid", fmt.Sprint(os.Getpid())}, &env{stdout: &stdout, stderr: &stderr, tty: true})
	require.Equal(t, exitOK, code)
	if s := stderr.String(); s != "" {
		// Slow, on a busy host: drawn, then erased.
		assert.Regexp(t, `^\raudit: [a-z ]+: \d+( of \d+)?\x1b\[K`, s)
		assert.True(t, strings.HasSuffix(s, "\r\x1b[K"), "erased: %q", s)
	}

	for _, tt := range []struct {
		name  string
		delay time.Duration
		drawn bool
	}{{"quick", time.Hour, false}, {"slow", 50 * time.Millisecond, true}} {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			e := &env{stdout: io.Discard, stderr: &stderr, tty: true}
			stop := e.showProgressAfter(tt.delay, 10*time.Millisecond, func() string { return "audit: reading values: 1 of 2" })
			time.Sleep(150 * time.Millisecond)
			stop()
			if !tt.drawn {
				assert.Empty(t, stderr.String())
				return
			}
			assert.True(t, strings.HasPrefix(stderr.String(), "\raudit: reading values: 1 of 2\x1b[K"), "%q", stderr.String())
			assert.True(t, strings.HasSuffix(stderr.String(), "\r\x1b[K"), "erased: %q", stderr.String())
		})
	}
}

// wantMetrics returns the lines, each with its newline before and after,
// that the exporter and audit -prom print with -per-connection for a pair
// of this process's from auditPair with c, selected by its port and judged
// at an idle timeout of 350s that c does not survive.
func wantMetrics(t *testing.T, c keepalive.Config, dialed, accepted net.Conn) []string {
	t.Helper()
	comm, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	command := strings.TrimSpace(string(comm))
	labels := func(c net.Conn) string {
		return fmt.Sprintf(`{command=%q,local="%v",pid="%d",remote="%v"}`, command, c.LocalAddr(), os.Getpid(), c.RemoteAddr())
	}
	return []string{
		fmt.Sprintf("\nkeepalive_connections{command=%q,verdict=\"at-risk\"} 1\n", command),
		fmt.Sprintf("\nkeepalive_connections{command=%q,verdict=\"off\"} 1\n", command),
		fmt.Sprintf("\nkeepalive_connections{command=%q,verdict=\"ok\"} 0\n", command),
		fmt.Sprintf("\nkeepalive_probing_connections{command=%q} 0\n", command),
		"\nkeepalive_scrape_errors_total 0\n",
		fmt.Sprintf("\nkeepalive_idle_seconds%s %g\n", labels(dialed), c.Idle.Seconds()),
		fmt.Sprintf("\nkeepalive_interval_seconds%s %g\n", labels(dialed), c.Interval.Seconds()),
		fmt.Sprintf("\nkeepalive_probes%s %d\n", labels(dialed), c.Count),
		fmt.Sprintf("\nkeepalive_user_timeout_seconds%s %g\n", labels(dialed), c.UserTimeout.Seconds()),
		"\nkeepalive_enabled" + labels(dialed) + " 1\n",
		"\nkeepalive_enabled" + labels(accepted) + " 0\n",
		"\n# TYPE keepalive_scrape_duration_seconds gauge\n",
	}
}

// TestAuditProm checks audit -prom: the file holds the metrics of the
// connections, is readable by all, and no temporary file is left beside
// it.
func TestAuditProm(t *testing.T) {
	c := keepalive.Config{Idle: 400 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 40 * time.Second}
	dialed, accepted := auditPair(t, c)
	dir := t.TempDir()
	file := filepath.Join(dir, "keepalive.prom")
	require.NoError(t, os.WriteFile(file, []byte("old\n"), 0o600))
	r := runArgs(context.Background(), "audit", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)), "-idle-timeout", "350s", "-prom", file, "-per-connection")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stdout)
	assert.Empty(t, r.stderr)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	text := string(b)
	t.Logf("%s", text)
	for _, w := range wantMetrics(t, c, dialed, accepted) {
		assert.Contains(t, "\n"+text, w)
	}
	fi, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm(), "readable by node_exporter's user")
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, ents, 1, "no temporary file left")

	// An audit that fails leaves the file as it was.
	require.NoError(t, os.WriteFile(file, []byte("old\n"), 0o644))
	r = runArgs(context.Background(), "audit", "-pid", "999999999", "-prom", file)
	assert.Equal(t, exitFail, r.code)
	assert.Equal(t, "keepalive audit: no process 999999999\n", r.stderr)
	b, err = os.ReadFile(file)
	require.NoError(t, err)
	assert.Equal(t, "old\n", string(b))

	// A file that cannot be written is named as given, with what is wrong.
	r = runArgs(context.Background(), "audit", "-pid", fmt.Sprint(os.Getpid()), "-prom", "/no/such/dir/k.prom")
	assert.Equal(t, exitFail, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, "keepalive audit: cannot write /no/such/dir/k.prom: the folder /no/such/dir does not exist (no such file or directory)\n", r.stderr)
}

// TestApplyCmd sets a Config on this test's own connection through the
// command and checks it with getsockopt.
func TestApplyCmd(t *testing.T) {
	dialed, accepted := auditPair(t, keepalive.Config{Idle: time.Hour})
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	acc, err := sockopts.Read(accepted)
	require.NoError(t, err)
	r := runArgs(context.Background(), "apply", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)),
		"-config", "idle=25s,interval=5s,count=3", "-user-timeout", "40s", "-idle-timeout", "30s")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	want := sockopts.Values{KeepAlive: true, Idle: 25 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 40 * time.Second}
	for _, end := range []*net.TCPConn{dialed, accepted} {
		k, err := sockopts.Read(end)
		require.NoError(t, err)
		assert.Equal(t, want, k, "%v after apply", end.LocalAddr())
	}
	t.Logf("stdout:\n%s", r.stdout)
	out := squeeze(r.stdout)
	assert.Contains(t, out, fmt.Sprintf("(pid %d): changed 2 of 2 connections\n", os.Getpid()))
	assert.Contains(t, out, fmt.Sprintf(" %v %v on idle=3600s,interval=%ds,count=%d, no user timeout on idle=25s,interval=5s,count=3,user-timeout=40s ok \n",
		dialed.LocalAddr(), dialed.RemoteAddr(), int(sys.Interval.Seconds()), sys.Count))
	assert.Contains(t, out, fmt.Sprintf(" %v %v off idle=%ds,interval=%ds,count=%d, no user timeout on idle=25s,interval=5s,count=3,user-timeout=40s ok \n",
		accepted.LocalAddr(), accepted.RemoteAddr(), int(acc.Idle.Seconds()), int(acc.Interval.Seconds()), acc.Count))
	assert.Contains(t, out, "checked against an idle timeout of 30s\n")
}

// TestApplyCmdFails checks apply's failures that are not usage errors:
// no such process, nothing selected, and an invalid Config that changes
// nothing.
func TestApplyCmdFails(t *testing.T) {
	dialed, _ := auditPair(t, keepalive.Config{Idle: time.Hour})
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"apply", "-pid", "999999999", "-idle", "10s"}, exitFail, "keepalive apply: no process 999999999\n"},
		{[]string{"apply", "-pid", fmt.Sprint(os.Getpid()), "-remote", "10.0.0.0/8", "-port", fmt.Sprint(portOf(dialed)), "-idle", "10s"}, exitFail,
			fmt.Sprintf("keepalive apply: process %d holds no TCP connection that the flags select\n", os.Getpid())},
		{[]string{"apply", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)), "-idle", "10s", "-user-timeout", "1h", "-count", "200"}, exitUsage,
			"keepalive apply: invalid value \"200\" for flag -count: " + lib(keepalive.Config{Count: 200}.Validate()) + "\n" + usageTail["keepalive apply"]},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runArgs(context.Background(), tt.args...)
			assert.Equal(t, tt.code, r.code)
			assert.Empty(t, r.stdout)
			assert.Equal(t, tt.stderr, r.stderr)
		})
	}
	k, err := sockopts.Read(dialed)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, k.Idle, "left as it was")
}

// nobody is the user the permission test runs the command as.
const nobody = 65534

// TestAuditCmdUnsearched runs keepalive audit as user nobody (without
// CAP_SYS_PTRACE) over the connections of a process of root's that the test
// started: their owner cannot be found, and the summary names the processes
// that could not be searched, root's helper among them by its command and
// pid, and why.
func TestAuditCmdUnsearched(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "needs root: runs the command as another user")
	}
	name := fmt.Sprintf("kaunsearch%d", os.Getpid()%100000)
	target := startHold(t, name, "1", "off")
	cmd := exec.Command(testBinary(t, true), "audit", "-port", fmt.Sprint(target.Port))
	cmd.Env = append(os.Environ(), helperEnv+"=run")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	require.NoError(t, cmd.Run(), "stderr: %s", stderr.String())
	t.Logf("stdout:\n%s", stdout.String())
	assert.Empty(t, stderr.String())
	out := strings.Join(strings.Fields(stdout.String()), " ")
	assert.Contains(t, out, "no process found (not permitted to look, or closed): 2 connections")
	assert.Regexp(t, `\d+ process(es)? could not be searched for lack of permission, and may hold the connections that show no process: `, out)
	assert.Contains(t, out, fmt.Sprintf(" %s (pid %d)", name, target.PID), "root's helper is named")
	assert.Contains(t, out, " why: open /proc/")
	assert.Contains(t, out, fmt.Sprintf("this process runs as uid %d without CAP_SYS_PTRACE", nobody))
	assert.NotContains(t, out, "kthreadd", "kernel threads hold no descriptors")
	assert.Contains(t, out, fmt.Sprintf("no values were read from the sockets; the BPF iterator could not run: this process (uid %d) lacks CAP_BPF, CAP_PERFMON", nobody))
}

// TestUnsearched checks how the processes an audit could not search are
// named: by command, in the order of their pids, with at most three pids
// each.
func TestUnsearched(t *testing.T) {
	p := func(pid int, command string) *audit.PermissionError {
		return &audit.PermissionError{PID: pid, Command: command}
	}
	assert.Equal(t, "sshd (pid 812)", unsearched([]*audit.PermissionError{p(812, "sshd")}))
	assert.Equal(t, "systemd (pid 1), postgres (2 processes: pids 40 and 41), sshd (pid 50), (ended) (pid 60)",
		unsearched([]*audit.PermissionError{p(1, "systemd"), p(40, "postgres"), p(41, "postgres"), p(50, "sshd"), p(60, "")}))
	assert.Equal(t, "postgres (3 processes: pids 40, 41 and 42)", unsearched([]*audit.PermissionError{p(40, "postgres"), p(41, "postgres"), p(42, "postgres")}))
	assert.Equal(t, "postgres (5 processes: pids 40, 41, 42 and 2 more), sshd (pid 43)",
		unsearched([]*audit.PermissionError{p(40, "postgres"), p(41, "postgres"), p(42, "postgres"), p(43, "sshd"), p(44, "postgres"), p(45, "postgres")}))
}

// TestApplyCmdPermission runs keepalive apply as user nobody (without
// CAP_SYS_PTRACE) against a process of root's that the test started: it
// fails with status 1, says in words what is missing, and changes
// nothing.
func TestApplyCmdPermission(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "needs root: runs the command as another user")
	}
	target := startHold(t, "", "1", "off")
	cmd := exec.Command(testBinary(t, true), "apply", "-pid", fmt.Sprint(target.PID), "-idle", "30s")
	cmd.Env = append(os.Environ(), helperEnv+"=run")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	err := cmd.Run()
	t.Logf("stderr: %s", stderr.String())
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit)
	assert.Equal(t, exitFail, exit.ExitCode())
	assert.Empty(t, stdout.String())
	msg := stderr.String()
	assert.True(t, strings.HasPrefix(msg, fmt.Sprintf("keepalive apply: no permission to inspect process %d (", target.PID)), msg)
	for _, w := range []string{
		"ptrace read access",
		"run as the user that owns it (uid 0)",
		fmt.Sprintf("this process runs as uid %d without CAP_SYS_PTRACE", nobody),
	} {
		assert.Contains(t, msg, w)
	}
	assert.Equal(t, 1, strings.Count(msg, "\n"), "one line")

	// And root, which may, changes it.
	r := runArgs(context.Background(), "apply", "-pid", fmt.Sprint(target.PID), "-idle", "30s")
	assert.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, r.stdout, fmt.Sprintf("(pid %d): changed 2 of 2 connections\n", target.PID))
}
