package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/cgrouptest"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// enforceLab is what a test of keepalive enforce needs, as a user runs it:
// root, the BPF tests' lock, bpffs at /sys/fs/bpf (which the command mounts
// if need be; the test unmounts it after if it was not mounted before),
// and a cgroup of the test's own. At cleanup no policy and no BPF object
// of the project may be left.
func enforceLab(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOutsideCI(t, "keepalive enforce needs root")
	}
	cgrouptest.Lock(t)
	var st unix.Statfs_t
	mounted := unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC
	before, err := enforce.LoadedObjects()
	require.NoError(t, err)
	t.Cleanup(func() {
		ps, err := enforce.List(context.Background(), "")
		assert.NoError(t, err)
		assert.Empty(t, ps, "policies left in force")
		for _, p := range ps {
			enforce.Remove(context.Background(), "", p.Cgroup)
		}
		var now enforce.Objects
		ok := assert.Eventually(t, func() bool {
			now, err = enforce.LoadedObjects()
			return err == nil && now.Len() == before.Len()
		}, 20*time.Second, 10*time.Millisecond)
		if !ok {
			t.Errorf("the project's BPF objects: before %v; now %v", before, now)
		}
		_, err = os.Stat("/sys/fs/bpf/keepalive")
		assert.ErrorIs(t, err, os.ErrNotExist, "left in bpffs")
		if !mounted && unix.Statfs("/sys/fs/bpf", &st) == nil && st.Type == unix.BPF_FS_MAGIC {
			unix.Unmount("/sys/fs/bpf", 0)
		}
	})
	return cgrouptest.New(t)
}

// startIn starts the program argv in the cgroup, with its standard input
// a pipe that stays open until cleanup, and returns its pid.
func startIn(t *testing.T, cgroup string, argv ...string) int {
	t.Helper()
	path, err := exec.LookPath(argv[0])
	if err != nil {
		skipOutsideCI(t, "%s is not installed (Debian package %s)", argv[0], argv[0])
	}
	fd, err := unix.Open(cgroup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	cmd := exec.Command(path, argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, spawn(cmd.Start))
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd.Process.Pid
}

// socatServer starts a socat server on a free loopback port in the cgroup,
// which forks a child to hold each connection it accepts.
func socatServer(t *testing.T, cgroup string) string {
	t.Helper()
	addr := freePort(t)
	_, port, _ := strings.Cut(addr, ":")
	startIn(t, cgroup, "socat", "TCP-LISTEN:"+port+",bind=127.0.0.1,reuseaddr,fork", "EXEC:cat")
	require.Eventually(t, func() bool {
		conns, err := listening(addr)
		return err == nil && conns
	}, 10*time.Second, 10*time.Millisecond, "socat listening on %s", addr)
	return addr
}

// listening reports whether something listens on addr.
func listening(addr string) (bool, error) {
	b, err := exec.Command("ss", "-Htln", "sport = :"+addr[strings.LastIndex(addr, ":")+1:]).Output()
	return len(strings.TrimSpace(string(b))) > 0, err
}

// end is one end of a connection, in the process that holds it.
type end struct {
	pid, fd int
	local   string
}

// socatClient connects a socat client in the cgroup to addr and returns
// both ends of its connection: the client's and the server's, found by
// their addresses through audit (which only finds them: the values are
// read below with the test's own getsockopt).
func socatClient(t *testing.T, cgroup, addr string) (client, server end) {
	t.Helper()
	pid := startIn(t, cgroup, "socat", "STDIO", "TCP:"+addr)
	port := portNumber(t, addr)
	require.Eventually(t, func() bool {
		rep, err := audit.Audit(context.Background(), audit.Options{Filter: audit.Filter{Port: port}, KernelOnly: true})
		if err != nil {
			return false
		}
		client, server = end{}, end{}
		for _, c := range rep.Conns {
			if c.PID == pid {
				client = end{c.PID, c.FD, c.Local.String()}
			}
		}
		for _, c := range rep.Conns {
			if client.pid != 0 && c.Remote.String() == client.local && c.PID != 0 {
				server = end{c.PID, c.FD, c.Local.String()}
			}
		}
		return client.pid != 0 && server.pid != 0
	}, 10*time.Second, 10*time.Millisecond, "socat's connection to %s", addr)
	return client, server
}

func portNumber(t *testing.T, addr string) uint16 {
	t.Helper()
	var p uint16
	_, err := fmt.Sscanf(addr[strings.LastIndex(addr, ":")+1:], "%d", &p)
	require.NoError(t, err)
	return p
}

// valuesOf reads the options of e's socket with the test's own
// getsockopt, on a duplicate made with pidfd_getfd.
func valuesOf(t *testing.T, e end) sockopts.Values {
	t.Helper()
	return readSocket(t, e.pid, e.fd)
}

// bareValues is what a socket nobody set reports.
func bareValues(t *testing.T) sockopts.Values {
	t.Helper()
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	return sockopts.Values{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count}
}

// TestEnforceCmd uses keepalive enforce as a user would, on a cgroup
// holding socat, a program nobody here wrote: a connection it holds
// already, one it makes after, -list, -remove, and one after that.
func TestEnforceCmd(t *testing.T) {
	cg := enforceLab(t)
	addr := socatServer(t, cg)
	oldClient, oldServer := socatClient(t, cg, addr)
	assert.Equal(t, bareValues(t), valuesOf(t, oldClient), "before the policy")

	r := runArgs(context.Background(), "enforce", "-cgroup", cg, "-config", "idle=31s,interval=7s,count=4")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Empty(t, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 6, r.stdout)
	assert.Regexp(t, `^policy in force on `+cg+` \(cgroup \d+\), pinned at /sys/fs/bpf/keepalive/cgroup-\d+$`, lines[0])
	assert.Equal(t, "  config  idle=31s,interval=7s,count=4,user-timeout=59s", lines[1])
	assert.Equal(t, "  flows   all flows", lines[2])
	assert.Equal(t, "  wins    policy (a process's own setsockopt of an option the policy sets is swallowed)", lines[3])
	assert.Equal(t, "every connection established from now on gets it; 2 existing connection ends set now (1 network namespace searched)", lines[5])

	want := sockopts.Values{KeepAlive: true, Idle: 31 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 59 * time.Second}
	assert.Equal(t, want, valuesOf(t, oldClient), "the client's end, established before")
	assert.Equal(t, want, valuesOf(t, oldServer), "the server's end, established before")
	newClient, newServer := socatClient(t, cg, addr)
	assert.Equal(t, want, valuesOf(t, newClient), "the client's end, established after")
	assert.Equal(t, want, valuesOf(t, newServer), "the server's end, established after")

	r = runArgs(context.Background(), "enforce", "-list")
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.Contains(t, squeeze(r.stdout), "CGROUP CONFIG FLOWS WINS SINCE SET DIALLED ACCEPTED EXISTING NOTES")
	assert.Contains(t, squeeze(r.stdout), cg+" idle=31s,interval=7s,count=4,user-timeout=59s all flows policy ")
	assert.Regexp(t, ` 4 1 1 2 -\s*\n$`, squeeze(r.stdout))
	r = runArgs(context.Background(), "enforce", "-list", "-json")
	require.Equal(t, exitOK, r.code, r.stderr)
	var p struct {
		Cgroup string
		Config string
		Counts struct{ Set, Dialled, Accepted, Existing uint64 }
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &p), r.stdout)
	assert.Equal(t, cg, p.Cgroup)
	assert.Equal(t, "idle=31s,interval=7s,count=4,user-timeout=59s", p.Config)
	assert.Equal(t, uint64(4), p.Counts.Set)

	r = runArgs(context.Background(), "enforce", "-remove", "-cgroup", cg)
	require.Equal(t, exitOK, r.code, r.stderr)
	assert.True(t, strings.HasPrefix(r.stdout, "policy on "+cg+" removed; it had set 4 connections since "), r.stdout)
	assert.True(t, strings.HasSuffix(r.stdout, "\nthe connections it set keep their values; new connections are not touched\n"), r.stdout)
	assert.Equal(t, want, valuesOf(t, oldClient), "set before the policy ended")
	lastClient, lastServer := socatClient(t, cg, addr)
	assert.Equal(t, bareValues(t), valuesOf(t, lastClient), "the client's end, after the policy ended")
	assert.Equal(t, bareValues(t), valuesOf(t, lastServer), "the server's end, after the policy ended")

	r = runArgs(context.Background(), "enforce", "-list")
	assert.Equal(t, "no policy in force\n", r.stdout)
	r = runArgs(context.Background(), "enforce", "-remove", "-cgroup", cg)
	assert.Equal(t, exitFail, r.code)
	assert.Equal(t, "keepalive enforce: no policy is in force on "+cg+"\n", r.stderr)
}

// TestEnforceCmdRace runs keepalive enforce in many processes at once on
// one cgroup: one policy is left, with the Config of one of them.
func TestEnforceCmdRace(t *testing.T) {
	cg := enforceLab(t)
	before, err := enforce.LoadedObjects()
	require.NoError(t, err)
	const n = 8
	var wg sync.WaitGroup
	results := make([]runResult, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, err := testproc.Start(t, testproc.Opts{
				Env:  []string{helperEnv + "=run", "GORACE=atexit_sleep_ms=0"},
				Args: []string{"enforce", "-cgroup", cg, "-config", fmt.Sprintf("idle=%ds", 100+i)},
			})
			if err != nil {
				results[i] = runResult{code: -1, stderr: err.Error()}
				return
			}
			out, _ := io.ReadAll(h.Stdout)
			h.Cmd.Wait()
			results[i] = runResult{code: h.Cmd.ProcessState.ExitCode(), stdout: string(out)}
		}()
	}
	wg.Wait()
	for i, r := range results {
		assert.Equal(t, exitOK, r.code, "run %d: %s", i, r.stderr)
	}
	r := runArgs(context.Background(), "enforce", "-list", "-json")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 1, "one policy: %s", r.stdout)
	var p struct{ Config string }
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &p))
	objs, err := enforce.LoadedObjects()
	require.NoError(t, err)
	assert.Len(t, objs.Links, len(before.Links)+2, "two links, one per hook: %v", objs)
	c, err := keepalive.ParseConfig(p.Config)
	require.NoError(t, err)
	addr := socatServer(t, cg)
	client, server := socatClient(t, cg, addr)
	want := sockopts.Values{KeepAlive: true, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
	assert.Equal(t, want, valuesOf(t, client))
	assert.Equal(t, want, valuesOf(t, server))
	r = runArgs(context.Background(), "enforce", "-remove", "-cgroup", cg)
	require.Equal(t, exitOK, r.code, r.stderr)
}

// TestEnforceCmdErrors checks what enforce refuses: bad command lines and
// Configs, and a path that is not a cgroup v2 directory, with status 2;
// a missing policy and missing capabilities with status 1. None leaves
// anything behind (enforceLab checks).
func TestEnforceCmdErrors(t *testing.T) {
	cg := enforceLab(t)
	usage := "usage: keepalive enforce -cgroup PATH [flags] | -list | -remove -cgroup PATH\nRun \"keepalive enforce -h\" for the flags and examples.\n"
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, exitUsage, "missing -cgroup (or -list)"},
		{[]string{"-cgroup", cg}, exitUsage, "missing -config (or -idle, -interval, -count, -user-timeout, -off): say what to set"},
		{[]string{"-list", "-config", "idle=1s"}, exitUsage, "-list takes no -config"},
		{[]string{"-list", "-cgroup", cg}, exitUsage, "-list takes no -cgroup"},
		{[]string{"-remove", "-cgroup", cg, "-idle", "3s"}, exitUsage, "-remove takes no -idle"},
		{[]string{"-list", "-remove"}, exitUsage, "-list and -remove: choose one"},
		{[]string{"-json", "-cgroup", cg, "-idle", "3s"}, exitUsage, "-json is for -list"},
		{[]string{"-cgroup", cg, "-idle", "1.5s"}, exitUsage, `invalid value "1.5s" for flag -idle: ` + lib(keepalive.Config{Idle: 1500 * time.Millisecond}.Validate())},
		{[]string{"-cgroup", cg, "-idle", "30s", "-wins", "nobody"}, exitUsage, `invalid value "nobody" for flag -wins: want policy or program`},
		{[]string{"-cgroup", cg, "-idle", "30s", "-remote", "10.0.0.0/33"}, exitUsage, `invalid value "10.0.0.0/33" for flag -remote: want an address such as 10.1.2.3 or a prefix such as 10.0.0.0/8`},
		{[]string{"-cgroup", cg, "-idle", "30s", "-port", "0"}, exitUsage, `invalid value "0" for flag -port: want a port number from 1 to 65535`},
		{[]string{"-cgroup", "/tmp", "-idle", "30s"}, exitUsage, "/tmp is not in a cgroup filesystem"},
		{[]string{"-cgroup", filepath.Join(cg, "nothing"), "-idle", "30s"}, exitUsage, "cgroup " + filepath.Join(cg, "nothing") + ": no such directory: not a cgroup v2 directory (cgroup v2 is mounted at "},
		{[]string{"-remove", "-cgroup", cg}, exitFail, "no policy is in force on " + cg},
	} {
		r := runArgs(context.Background(), append([]string{"enforce"}, tt.args...)...)
		assert.Equal(t, tt.code, r.code, "%q: %s", tt.args, r.stderr)
		assert.Empty(t, r.stdout, "%q", tt.args)
		assert.True(t, strings.HasPrefix(r.stderr, "keepalive enforce: "+tt.msg), "%q: %s", tt.args, r.stderr)
		if tt.code == exitUsage {
			assert.True(t, strings.HasSuffix(r.stderr, usage), "%q: %s", tt.args, r.stderr)
		}
	}

	// Without the capabilities, as root: setpriv drops them.
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		skipOutsideCI(t, "dropping capabilities needs setpriv (util-linux)")
	}
	cmd := exec.Command(setpriv, "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all", "--", testBinary(t, false), "enforce", "-cgroup", cg, "-idle", "30s")
	cmd.Env = append(os.Environ(), helperEnv+"=run")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "%v: %s", err, out)
	assert.Equal(t, exitFail, ee.ExitCode())
	assert.Equal(t, "keepalive enforce: this process (uid 0) lacks CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON (or CAP_SYS_ADMIN, which stands for CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON), which loading and attaching a policy's programs needs: permission denied\n", string(out))
}

// exampleCgroup gives TestExamples a cgroup of its own for the enforce
// examples, with what enforceLab gives, or "" where it cannot make one.
func exampleCgroup(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return ""
	}
	return enforceLab(t)
}
