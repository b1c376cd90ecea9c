package audit_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// startHoldWith starts a hold helper with o (a cgroup, a network
// namespace of its own) holding pairs connections whose dialed ends carry
// config; in a namespace of its own it brings lo up first.
func startHoldWith(t testing.TB, o testproc.Opts, pairs int, config string, sysctls map[string]string) *helper {
	t.Helper()
	o.Env = append(o.Env, helperEnv+"=hold")
	spec := testproc.HoldSpec{Groups: []testproc.Group{{Pairs: pairs, Config: config}}, LoopbackUp: o.Cloneflags&unix.CLONE_NEWNET != 0, Sysctls: sysctls}
	p, held, err := testproc.StartHoldWith(t, o, spec)
	require.NoError(t, err)
	return &helper{Holding: held, cmd: p.Cmd, stdin: p.Stdin, proc: p}
}

// netnsOf returns the inode number of process pid's network namespace.
func netnsOf(t testing.TB, pid int) uint64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st))
	return st.Ino
}

// socketValues reads every socket of process pid with the tests' own
// getsockopt, by descriptor.
func socketValues(t *testing.T, pid int) map[int]sockopts.Values {
	t.Helper()
	v := map[int]sockopts.Values{}
	for _, fd := range ownedFDs(t, pid) {
		if got, err := sockopts.ReadFrom(pid, fd); err == nil {
			v[fd] = got
		}
	}
	return v
}

// valuesOfConfig is what getsockopt reports for a socket set to c.
func valuesOfConfig(c keepalive.Config) sockopts.Values {
	return sockopts.Values{KeepAlive: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
}

// TestAuditNoPtrace runs audit and apply in a process where pidfd_open,
// pidfd_getfd and ptrace are refused (a seccomp filter), against a process
// of another user (nobody) and one in a network namespace the test made:
// every value audit reports is the one getsockopt reads on the socket, the
// host-wide audit finds the other namespace's connections with their
// process, and apply changes every socket to exactly the Config asked.
func TestAuditNoPtrace(t *testing.T) {
	needRoot(t, "starts processes as another user and in a network namespace of their own")
	own := keepalive.Config{Idle: 33 * time.Second, Interval: 3 * time.Second, Count: 4}
	other := startHold(t, 2, own.String(), false, &syscall.Credential{Uid: nobody, Gid: nobody})
	inNS := startHoldWith(t, testproc.Opts{Cloneflags: unix.CLONE_NEWNET}, 2, own.String(), nil)
	require.NotEqual(t, netnsOf(t, os.Getpid()), netnsOf(t, inNS.PID))
	before := map[int]map[int]sockopts.Values{other.PID: socketValues(t, other.PID), inNS.PID: socketValues(t, inNS.PID)}
	change := keepalive.Config{Idle: 21 * time.Second, Interval: 2 * time.Second, Count: 5, UserTimeout: 9 * time.Second}

	r := runAuditor(t, auditorSpec{Seccomp: true, PIDs: []int{other.PID, inNS.PID}, ApplyPIDs: []int{other.PID, inNS.PID}, Change: change.String()})
	assert.Contains(t, r.PidfdOpen, "operation not permitted", "the auditor may not use pidfd_open")
	require.Empty(t, r.AuditErr)
	assert.Empty(t, r.BPFError)
	assert.Contains(t, r.Namespaces, netnsOf(t, inNS.PID), "the host-wide audit listed the other namespace")
	require.Len(t, r.Conns, 8, "two pairs, both ends, in each helper")
	for _, c := range r.Conns {
		assert.Equal(t, "bpf", c.Method, "pid %d fd %d", c.PID, c.FD)
		assert.Empty(t, c.Err, "pid %d fd %d", c.PID, c.FD)
		assert.Equal(t, netnsOf(t, c.PID), c.Netns, "pid %d fd %d", c.PID, c.FD)
		assert.Equal(t, before[c.PID][c.FD], c.Values, "pid %d fd %d: audit's values; want getsockopt's", c.PID, c.FD)
	}
	assert.Equal(t, []string{"", ""}, r.ApplyErrs)
	require.Len(t, r.Applied, 8)
	for _, a := range r.Applied {
		assert.Empty(t, a.Err, "pid %d fd %d", a.PID, a.FD)
		assert.Equal(t, "bpf", a.Method, "pid %d fd %d", a.PID, a.FD)
		got := readFrom(t, a.PID, a.FD)
		assert.Equal(t, valuesOfConfig(change), got, "pid %d fd %d: getsockopt after apply", a.PID, a.FD)
		assert.Equal(t, got, a.After, "pid %d fd %d: read back; want getsockopt's", a.PID, a.FD)
	}
}

// bpfCaps are setpriv's arguments that take from a root process the
// capabilities the BPF iterator needs.
var bpfCaps = []string{"--bounding-set=-bpf,-perfmon,-sys_admin", "--inh-caps=-bpf,-perfmon,-sys_admin"}

// TestAuditFallback runs audit and apply in a process without the
// capabilities the BPF iterator needs: by default they fall back to
// pidfd_getfd and say why, with the values getsockopt reads; asked for the
// BPF iterator only, they fail naming what is missing and change nothing.
func TestAuditFallback(t *testing.T) {
	needRoot(t, "drops capabilities from a root process")
	own := keepalive.Config{Idle: 33 * time.Second, Interval: 3 * time.Second, Count: 4}
	h := startHold(t, 2, own.String(), false, nil)
	before := socketValues(t, h.PID)
	change := keepalive.Config{Idle: 22 * time.Second, Interval: 2 * time.Second, Count: 6, UserTimeout: 8 * time.Second}

	r := runAuditor(t, auditorSpec{AuditPID: h.PID, ApplyPIDs: []int{h.PID}, Change: change.String()}, bpfCaps...)
	const missing = "lacks CAP_BPF, CAP_PERFMON (or CAP_SYS_ADMIN, which stands for CAP_BPF and CAP_PERFMON), which the BPF iterator needs"
	assert.Contains(t, r.BPFError, missing)
	require.Empty(t, r.PIDAuditErr)
	require.Len(t, r.PIDConns, 4)
	for _, c := range r.PIDConns {
		assert.Equal(t, "pidfd", c.Method, "fd %d", c.FD)
		assert.Equal(t, before[c.FD], c.Values, "fd %d: audit's values; want getsockopt's", c.FD)
	}
	assert.Equal(t, []string{""}, r.ApplyErrs)
	require.Len(t, r.Applied, 4)
	for _, a := range r.Applied {
		assert.Empty(t, a.Err, "fd %d", a.FD)
		assert.Equal(t, "pidfd", a.Method, "fd %d", a.FD)
		assert.Contains(t, a.BPFError, missing, "fd %d: why not through the iterator", a.FD)
		got := readFrom(t, h.PID, a.FD)
		assert.Equal(t, valuesOfConfig(change), got, "fd %d: getsockopt after apply", a.FD)
		assert.Equal(t, got, a.After, "fd %d: read back", a.FD)
	}

	changed := socketValues(t, h.PID)
	r = runAuditor(t, auditorSpec{Method: audit.MethodBPF, AuditPID: h.PID, ApplyPIDs: []int{h.PID}, Change: own.String()}, bpfCaps...)
	assert.Contains(t, r.PIDAuditErr, missing, "audit -method bpf")
	assert.Contains(t, r.ApplyErrs[0], missing, "apply -method bpf")
	assert.Empty(t, r.Applied)
	assert.Equal(t, changed, socketValues(t, h.PID), "nothing changed by the refused apply")
}

// TestAuditNeither runs audit and apply in a process that may use neither
// method on the process it inspects: no capability, and a real user other
// than the process's (pidfd_getfd needs ptrace attach access, checked
// against the real user; listing /proc/PID/fd needs read access, checked
// against the effective one, which is the process's). Both say what is
// missing for each method, and nothing is changed.
func TestAuditNeither(t *testing.T) {
	needRoot(t, "starts processes as other users")
	target := startHold(t, 1, "idle=33s", false, &syscall.Credential{Uid: nobody, Gid: nobody})
	before := socketValues(t, target.PID)
	r := runAuditor(t, auditorSpec{AuditPID: target.PID, ApplyPIDs: []int{target.PID}, Change: "idle=9s"},
		fmt.Sprintf("--ruid=%d", nobody-1), fmt.Sprintf("--euid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), "--clear-groups")
	require.Equal(t, nobody-1, r.UID)
	assert.Contains(t, r.BPFError, "lacks CAP_BPF, CAP_PERFMON")
	require.Empty(t, r.PIDAuditErr)
	require.Len(t, r.PIDConns, 2, "listed, with their process")
	for _, c := range r.PIDConns {
		assert.Equal(t, "kernel", c.Source, "fd %d: what the kernel shows only", c.FD)
		assert.Contains(t, c.Err, "pidfd_getfd needs ptrace attach access", "fd %d", c.FD)
	}
	assert.True(t, r.ApplyPerm[0], "a *audit.PermissionError: %s", r.ApplyErrs[0])
	assert.Equal(t, "pidfd_getfd", r.ApplyPermOps[0])
	for _, w := range []string{
		"ptrace attach access",
		fmt.Sprintf("this process runs as uid %d without CAP_SYS_PTRACE", nobody-1),
		"the BPF iterator, which needs no ptrace, could not run either",
		"lacks CAP_BPF, CAP_PERFMON",
	} {
		assert.Contains(t, r.ApplyErrs[0], w)
	}
	assert.Empty(t, r.Applied)
	assert.Equal(t, before, socketValues(t, target.PID), "nothing changed")
}

// TestAuditNamespaces checks that an audit of every process finds the
// connections of a process in a network namespace the test made, with
// its process, its namespace and the values getsockopt reads.
func TestAuditNamespaces(t *testing.T) {
	needRoot(t, "makes a network namespace")
	h := startHoldWith(t, testproc.Opts{Cloneflags: unix.CLONE_NEWNET}, 2, "idle=44s,interval=4s,count=4", nil)
	ns := netnsOf(t, h.PID)
	forMethods(t, func(t *testing.T, m audit.Method) {
		rep, err := audit.Audit(context.Background(), audit.Options{Method: m})
		require.NoError(t, err)
		var listed []uint64
		for _, n := range rep.Namespaces {
			if n.Err == nil {
				listed = append(listed, n.Inode)
			}
		}
		assert.Contains(t, listed, ns)
		assert.Equal(t, netnsOf(t, os.Getpid()), rep.Namespaces[0].Inode, "the caller's first")
		n := 0
		for _, c := range rep.Conns {
			if c.PID != h.PID {
				continue
			}
			n++
			assert.Equal(t, ns, c.Netns, "fd %d", c.FD)
			assert.Equal(t, m, c.Method, "fd %d", c.FD)
			assert.Equal(t, readFrom(t, h.PID, c.FD), valuesOf(c), "fd %d: audit's values; want getsockopt's", c.FD)
		}
		assert.Equal(t, 4, n, "two pairs, both ends")
	})
}

// TestApplyNamespaceDefaults applies changes that put fields back to
// their system default on a process in a network namespace whose
// defaults differ from the caller's: the default written is the
// process's namespace's; one the kernel refuses (a TCP_KEEPCNT default
// above its 127) leaves the socket that holds a count of its own as it
// was, whole, and is not written to the socket that holds the default
// already, as keepalive.Set does.
func TestApplyNamespaceDefaults(t *testing.T) {
	needRoot(t, "makes a network namespace")
	forMethods(t, func(t *testing.T, m audit.Method) {
		h := startHoldWith(t, testproc.Opts{Cloneflags: unix.CLONE_NEWNET}, 1, "idle=33s,interval=3s,count=4",
			map[string]string{"net/ipv4/tcp_keepalive_time": "1234", "net/ipv4/tcp_keepalive_probes": "200"})
		results, err := audit.Apply(context.Background(), h.PID, audit.Filter{}, audit.Change{Fields: audit.FieldIdle, Method: m})
		require.NoError(t, err)
		require.Len(t, results, 2)
		for _, r := range results {
			require.NoError(t, r.Err, "fd %d", r.Before.FD)
			assert.Equal(t, 1234*time.Second, readFrom(t, h.PID, r.Before.FD).Idle, "fd %d: the namespace's default", r.Before.FD)
		}
		before := socketValues(t, h.PID)
		results, err = audit.Apply(context.Background(), h.PID, audit.Filter{}, audit.Change{
			Config: keepalive.Config{Idle: 50 * time.Second}, Fields: audit.FieldKeepAlive | audit.FieldIdle | audit.FieldCount, Method: m})
		require.NoError(t, err)
		require.Len(t, results, 2)
		for _, r := range results {
			fd := r.Before.FD
			if before[fd].Count == 4 {
				assert.ErrorIs(t, r.Err, unix.EINVAL, "fd %d: TCP_KEEPCNT 200 refused", fd)
				assert.Equal(t, before[fd], readFrom(t, h.PID, fd), "fd %d as it was", fd)
				t.Logf("fd %d: %v", fd, r.Err)
				continue
			}
			require.NoError(t, r.Err, "fd %d holds the default count already", fd)
			want := before[fd]
			want.KeepAlive, want.Idle = true, 50*time.Second
			assert.Equal(t, want, readFrom(t, h.PID, fd), "fd %d", fd)
		}
	})
}

// TestAuditProbing checks the unanswered keepalive probes audit reports
// for a connection whose peer stopped answering (a socket filter drops
// everything it receives) against tcp_info's count read from the socket
// around the audit, and that its peer shows none.
func TestAuditProbing(t *testing.T) {
	forMethods(t, func(t *testing.T, m audit.Method) {
		dialed, accepted := pairOf(t, (&keepalive.Dialer{Config: keepalive.Config{Idle: time.Second, Interval: 3 * time.Second, Count: 20}}).DialContext)
		dropAll(t, accepted)
		deadline := time.Now().Add(30 * time.Second)
		for {
			before := probesOut(t, dialed)
			got := auditOne(t, audit.Options{Method: m}, dialed)
			after := probesOut(t, dialed)
			if before == after && before > 0 {
				assert.Equal(t, before, got.UnansweredProbes(), "audit's count; want tcp_info's")
				assert.Equal(t, audit.TimerKeepalive, got.Timer.Kind)
				assert.Zero(t, auditOne(t, audit.Options{Method: m}, accepted).UnansweredProbes(), "the peer probes nothing")
				t.Logf("%d probes unanswered", before)
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("no probe unanswered within 30s of silence: tcp_info %d, %d; audit %+v", before, after, got)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// dropAll attaches to c a socket filter that drops everything it
// receives: its peer's probes go unanswered, as a vanished peer's would.
func dropAll(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, sockopts.DropAll(c.(*net.TCPConn)))
}

// probesOut reads tcp_info's count of unanswered probes on c.
func probesOut(t *testing.T, c net.Conn) int {
	t.Helper()
	n, err := sockopts.Probes(c.(*net.TCPConn))
	require.NoError(t, err)
	return n
}

// descriptorKind names what a descriptor of this process is, from its
// link in /proc/self/fd: "anon_inode:bpf-prog", "socket", "pipe" ...
var descriptorKind = regexp.MustCompile(`^([a-z_]+:)?(\[?[a-z_-]+)`)

// descriptors counts this process's descriptors by kind.
func descriptors(t testing.TB) map[string]int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	require.NoError(t, err)
	n := map[string]int{}
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed meanwhile
		}
		k := descriptorKind.FindString(link)
		n[k]++
	}
	return n
}

// TestAuditLeaves checks that audit and apply, by either method, leave
// no descriptor open in the caller, of any kind (BPF programs, maps,
// links and iterators, pidfds, sockets): done, cancelled in each stage,
// refused, or failing.
func TestAuditLeaves(t *testing.T) {
	forMethods(t, func(t *testing.T, m audit.Method) {
		h := startHold(t, 2, "idle=33s", false, nil)
		ctx := context.Background()
		before := descriptors(t)
		_, err := audit.Audit(ctx, audit.Options{Method: m})
		require.NoError(t, err)
		_, err = audit.Audit(ctx, audit.Options{Method: m, Filter: audit.Filter{PID: h.PID}})
		require.NoError(t, err)
		for _, stage := range []audit.Stage{audit.Listing, audit.Owners, audit.Reading} {
			ctx, cancel := context.WithCancel(ctx)
			_, err := audit.Audit(ctx, audit.Options{Method: m, Progress: func(p audit.Progress) {
				if p.Stage == stage {
					cancel()
				}
			}})
			cancel()
			assert.ErrorIs(t, err, context.Canceled, "cancelled while %v", stage)
		}
		_, err = audit.Audit(ctx, audit.Options{Method: m, Filter: audit.Filter{PID: 999999999}})
		assert.ErrorIs(t, err, os.ErrNotExist)
		results, err := audit.Apply(ctx, h.PID, audit.Filter{}, audit.Change{Config: keepalive.Config{Idle: 9 * time.Second}, Fields: audit.FieldIdle, Method: m})
		require.NoError(t, err)
		assert.Len(t, results, 4)
		_, err = audit.Apply(ctx, 999999999, audit.Filter{}, audit.Change{Fields: audit.FieldIdle, Method: m})
		assert.ErrorIs(t, err, os.ErrNotExist)
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		_, err = audit.Apply(cancelled, h.PID, audit.Filter{}, audit.Change{Fields: audit.FieldIdle, Method: m})
		assert.ErrorIs(t, err, context.Canceled)
		after := descriptors(t)
		assert.Equal(t, before, after, "descriptors of this process by kind, before and after")
		t.Logf("descriptors: %v", maps.Collect(maps.All(after)))
	})
}
