package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/cgrouptest"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// TestAuditCmdPolicy uses keepalive audit as an operator would on a host
// with a policy: socat, in a cgroup under a policy, holds a connection
// made before it and one made after; audit names the policy that set each
// end, and how, in the table and in -json, by either method, and lists the
// policy with what it set and how many of the connections listed carry
// it. Once the last policy is removed, no record is left to name it.
func TestAuditCmdPolicy(t *testing.T) {
	cg := enforceLab(t)
	addr := socatServer(t, cg)
	oldClient, oldServer := socatClient(t, cg, addr)
	r := runArgs(context.Background(), "enforce", "-cgroup", cg, "-config", "idle=31s,interval=7s,count=4")
	require.Equal(t, exitOK, r.code, r.stderr)
	newClient, newServer := socatClient(t, cg, addr)
	port := fmt.Sprint(portNumber(t, addr))
	want := sockopts.Values{KeepAlive: true, Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 59 * time.Second}
	ends := map[end]string{oldClient: "existing", oldServer: "existing", newClient: "dialled", newServer: "accepted"}
	for e := range ends {
		require.Equal(t, want, valuesOf(t, e), "%+v", e)
	}

	r = runArgs(context.Background(), "audit", "-port", port)
	require.Equal(t, exitOK, r.code, r.stderr)
	t.Logf("stdout:\n%s", r.stdout)
	out := squeeze(r.stdout)
	for e, how := range ends {
		assert.Regexp(t, fmt.Sprintf(`\n %d %s \S+ established on 31s 7s 4 59s 59s socket #1 %s ok \n`, e.fd, regexp.QuoteMeta(e.local), how), out)
	}
	assert.Contains(t, out, "\nvalues read through the BPF iterator: no process was ptraced\n")
	assert.Contains(t, out, "\n1 policy in force (keepalive enforce):\n #1 "+cg+": idle=31s,interval=7s,count=4,user-timeout=59s, all flows, since ")
	assert.Contains(t, strings.Join(strings.Fields(r.stdout), " "),
		"set 4 connections (1 dialled, 1 accepted, 2 existing), kept 0 setsockopt calls from changing its values; of the connections above, 4 belong to its cgroup and 4 carry it")

	for _, method := range []string{"bpf", "pidfd"} {
		r = runArgs(context.Background(), "audit", "-json", "-method", method, "-port", port)
		require.Equal(t, exitOK, r.code, r.stderr)
		n := 0
		for line := range strings.Lines(r.stdout) {
			var c struct {
				PID, FD  int
				Method   string
				CgroupID uint64 `json:"cgroup_id"`
				SetBy    *struct {
					Cgroup, How, Set string
					InForce          bool `json:"in_force"`
				} `json:"set_by"`
			}
			require.NoError(t, json.Unmarshal([]byte(line), &c), line)
			how, ok := "", false
			for e, h := range ends {
				if e.pid == c.PID && e.fd == c.FD {
					how, ok = h, true
				}
			}
			if !ok {
				continue // socat's listener's process holds none; another process's
			}
			n++
			assert.Equal(t, method, c.Method, line)
			require.NotNil(t, c.SetBy, line)
			assert.Equal(t, cg, c.SetBy.Cgroup, line)
			assert.Equal(t, how, c.SetBy.How, line)
			assert.Equal(t, "keepalive,idle,interval,count,user-timeout", c.SetBy.Set, line)
			assert.True(t, c.SetBy.InForce, line)
			if method == "bpf" {
				assert.NotZero(t, c.CgroupID, line)
			} else {
				assert.Zero(t, c.CgroupID, "only the BPF iterator reads a socket's cgroup: %s", line)
			}
		}
		assert.Equal(t, 4, n, "-method %s: the four ends", method)
	}

	// Another policy keeps the records' map: the connections say that
	// the policy that set them has ended, and on which cgroup.
	other := cgrouptest.New(t)
	r = runArgs(context.Background(), "enforce", "-cgroup", other, "-idle", "62s")
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runArgs(context.Background(), "enforce", "-remove", "-cgroup", cg)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runArgs(context.Background(), "audit", "-port", port)
	require.Equal(t, exitOK, r.code, r.stderr)
	t.Logf("stdout:\n%s", r.stdout)
	out = squeeze(r.stdout)
	id := cgroupID(t, cg)
	for e := range ends {
		assert.Regexp(t, fmt.Sprintf(`\n %d %s \S+ established on 31s 7s 4 59s 59s socket ended \(cgroup %d\) ok \n`, e.fd, regexp.QuoteMeta(e.local), id), out,
			"the values stay, and the record says the policy ended")
	}
	assert.Contains(t, strings.Join(strings.Fields(r.stdout), " "),
		fmt.Sprintf("connections that keep the values of a policy that has ended, by its cgroup: cgroup %d (%s): 4", id, cg))
	assert.Contains(t, out, "\n1 policy in force (keepalive enforce):\n #1 "+other+": ")

	r = runArgs(context.Background(), "enforce", "-remove", "-cgroup", other)
	require.Equal(t, exitOK, r.code, r.stderr)
	r = runArgs(context.Background(), "audit", "-port", port)
	require.Equal(t, exitOK, r.code, r.stderr)
	out = squeeze(r.stdout)
	for e := range ends {
		assert.Regexp(t, fmt.Sprintf(`\n %d %s \S+ established on 31s 7s 4 59s 59s socket - ok \n`, e.fd, regexp.QuoteMeta(e.local)), out,
			"the values stay; the records went with the last policy")
	}
	assert.NotContains(t, out, "in force (keepalive enforce)")
	assert.NotContains(t, out, "ended")
}

// cgroupID returns the id of the cgroup at path: its inode number.
func cgroupID(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(path, &st))
	return st.Ino
}

// TestAuditCmdMethod checks -method: each method says it was used, and
// a bad value or one with -kernel-only is a usage error.
func TestAuditCmdMethod(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "the BPF iterator needs root")
	}
	dialed, _ := auditPair(t, keepalive.Config{Idle: time.Hour})
	port := fmt.Sprint(portOf(dialed))
	for _, tt := range []struct{ method, said string }{
		{"bpf", "\nvalues read through the BPF iterator: no process was ptraced\n"},
		{"pidfd", "\nvalues read with pidfd_getfd (ptrace)\n"},
		{"auto", "\nvalues read through the BPF iterator: no process was ptraced\n"},
	} {
		r := runArgs(context.Background(), "audit", "-method", tt.method, "-pid", fmt.Sprint(os.Getpid()), "-port", port)
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Contains(t, r.stdout, tt.said, "-method %s", tt.method)
		r = runArgs(context.Background(), "apply", "-method", tt.method, "-pid", fmt.Sprint(os.Getpid()), "-port", port, "-idle", "31s")
		require.Equal(t, exitOK, r.code, r.stderr)
		said := "changed through the BPF iterator: the process was not ptraced\n"
		if tt.method == "pidfd" {
			said = "changed with pidfd_getfd (ptrace)\n"
		}
		assert.Contains(t, r.stdout, said, "apply -method %s", tt.method)
	}
	for _, tt := range []struct {
		args   []string
		stderr string
	}{
		{[]string{"audit", "-method", "ptrace"}, "keepalive audit: invalid value \"ptrace\" for flag -method: want auto, bpf or pidfd\n" + usageTail["keepalive audit"]},
		{[]string{"audit", "-kernel-only", "-method", "bpf"}, "keepalive audit: -kernel-only reads no values: -method is not for it\n" + usageTail["keepalive audit"]},
		{[]string{"audit", "-kernel-only", "-bpffs", "/sys/fs/bpf"}, "keepalive audit: -kernel-only reads no values: -bpffs, where the policies that set them are, is not for it\n" + usageTail["keepalive audit"]},
		{[]string{"exporter", "-kernel-only", "-bpffs", "/sys/fs/bpf"}, "keepalive exporter: -kernel-only reads no values: -bpffs, where the policies that set them are, is not for it\n" + usageTail["keepalive exporter"]},
		{[]string{"apply", "-pid", "1", "-idle", "1s", "-method", "bpf,pidfd"}, "keepalive apply: invalid value \"bpf,pidfd\" for flag -method: want auto, bpf or pidfd\n" + usageTail["keepalive apply"]},
	} {
		r := runArgs(context.Background(), tt.args...)
		assert.Equal(t, exitUsage, r.code, "%v", tt.args)
		assert.Equal(t, tt.stderr, r.stderr, "%v", tt.args)
	}
	// A -bpffs that is not a bpffs fails the audit before it starts.
	notBPFFS := t.TempDir()
	r := runArgs(context.Background(), "audit", "-bpffs", notBPFFS, "-pid", fmt.Sprint(os.Getpid()))
	assert.Equal(t, exitFail, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, fmt.Sprintf("keepalive audit: bpffs directory %s is not a bpf filesystem (mount -t bpf bpffs %s)\n", notBPFFS, notBPFFS), r.stderr)
	// The exporter checks it before it serves.
	r = runArgs(context.Background(), "exporter", "-listen", "127.0.0.1:0", "-bpffs", notBPFFS)
	assert.Equal(t, exitFail, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, fmt.Sprintf("keepalive exporter: bpffs directory %s is not a bpf filesystem (mount -t bpf bpffs %s)\n", notBPFFS, notBPFFS), r.stderr)
}

// TestAuditCmdFallback runs keepalive audit and apply as root without the
// capabilities the BPF iterator needs (setpriv): they fall back to
// pidfd_getfd and say why; asked for the iterator only, they fail with
// status 1, naming what is missing, and change nothing.
func TestAuditCmdFallback(t *testing.T) {
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "needs root: drops capabilities")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		skipOutsideCI(t, "dropping capabilities needs setpriv (util-linux)")
	}
	target := startHold(t, "", "1", "idle=33s")
	run := func(args ...string) (code int, stdout, stderr string) {
		t.Helper()
		drop := "-bpf,-perfmon,-sys_admin"
		cmd := exec.Command(setpriv, append([]string{"--bounding-set=" + drop, "--inh-caps=" + drop, "--", testBinary(t, false)}, args...)...)
		cmd.Env = append(os.Environ(), helperEnv+"=run")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return code, out.String(), errOut.String()
	}
	const missing = "lacks CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN, which stands for CAP_BPF and CAP_PERFMON), which the BPF iterator needs"
	pid := fmt.Sprint(target.PID)
	code, out, stderr := run("audit", "-pid", pid)
	require.Equal(t, exitOK, code, stderr)
	t.Logf("stdout:\n%s", out)
	flat := strings.Join(strings.Fields(out), " ")
	assert.Contains(t, flat, "values read with pidfd_getfd (ptrace); the BPF iterator could not run: this process (uid 0) "+missing)
	assert.Contains(t, squeeze(out), " on 33s ")

	code, out, stderr = run("apply", "-pid", pid, "-idle", "34s")
	require.Equal(t, exitOK, code, stderr)
	assert.Contains(t, strings.Join(strings.Fields(out), " "), "changed with pidfd_getfd (ptrace); the BPF iterator could not change them: this process (uid 0) "+missing)

	before := map[int]sockopts.Values{}
	fds, err := sockopts.SocketFDs(target.PID)
	require.NoError(t, err)
	for _, fd := range fds {
		before[fd] = readSocket(t, target.PID, fd)
	}
	for _, args := range [][]string{{"audit", "-method", "bpf", "-pid", pid}, {"apply", "-method", "bpf", "-pid", pid, "-idle", "35s"}} {
		code, out, stderr = run(args...)
		assert.Equal(t, exitFail, code, "%v", args)
		assert.Empty(t, out, "%v", args)
		assert.Equal(t, fmt.Sprintf("keepalive %s: this process (uid 0) %s: permission denied\n", args[0], missing), stderr, "%v", args)
	}
	for fd, v := range before {
		assert.Equal(t, v, readSocket(t, target.PID, fd), "fd %d as it was", fd)
	}
}
