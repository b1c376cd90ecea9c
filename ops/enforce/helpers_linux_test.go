package enforce_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/cgrouptest"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// The test binary doubles as a helper process that holds connections in a
// cgroup, so that the policies act only on processes the tests started.
const helperEnv = "ENFORCE_TEST_HELPER" // "conns" (runConns), "enforce" (runEnforce) or "mountns" (runMountns)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		code := m.Run()
		testproc.Cleanup()
		if goBinaryPath != "" {
			os.RemoveAll(filepath.Dir(goBinaryPath))
		}
		os.Exit(code)
	case "conns":
		os.Exit(runConns())
	case "enforce":
		os.Exit(runEnforce())
	case "mountns":
		os.Exit(runMountns())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

// connSpec says what a conns helper listens on, and what it sets itself.
type connSpec struct {
	// Listen holds the addresses of its listeners, such as
	// "127.0.0.1:0" or "[::1]:0".
	Listen []string
	// Dial and Listener, keyed by option (keepalive, idle, interval,
	// count, user-timeout), are set with setsockopt on each socket it
	// dials, before connecting, and on each listener, before listening.
	Dial, Listener map[string]int
	// LoopbackUp brings lo up first, for a helper in a network namespace
	// of its own.
	LoopbackUp bool
	// MPTCP makes the listeners Multipath TCP ones, as Go's are by default
	// since Go 1.24 where the kernel has it; false makes them plain TCP.
	MPTCP bool
	// DialMPTCP makes the sockets it dials Multipath TCP ones, which Go's
	// net.Dialer makes only when asked; false makes them plain TCP.
	DialMPTCP bool
}

// sock is one end of a connection in a conns helper.
type sock struct {
	FD            int
	Local, Remote string
}

// pair is a connection, both ends in the helper.
type pair struct{ Dialled, Accepted sock }

var optionNames = map[string][2]int{
	"keepalive":    {unix.SOL_SOCKET, unix.SO_KEEPALIVE},
	"idle":         {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE},
	"interval":     {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL},
	"count":        {unix.IPPROTO_TCP, unix.TCP_KEEPCNT},
	"user-timeout": {unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT},
}

// control returns a Control hook that sets opts on the socket.
func control(opts map[string]int) func(string, string, syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) {
			for name, v := range opts {
				o := optionNames[name]
				if e := unix.SetsockoptInt(int(fd), o[0], o[1], v); e != nil && err == nil {
					err = fmt.Errorf("setsockopt %s %d: %w", name, v, e)
				}
			}
		})
		return err
	}
}

// runConns is a conns helper: it listens where its connSpec says, prints
// the listeners' addresses as JSON, then, for each line "dial I N" on its
// standard input, dials listener I N times, accepts each, and prints the
// pairs as JSON, until its standard input closes. Keepalive is left off
// by Go on every socket (KeepAlive -1): only the spec's options are set.
func runConns() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "conns:", err)
		return 1
	}
	var spec connSpec
	if err := json.Unmarshal([]byte(os.Getenv("ENFORCE_TEST_SPEC")), &spec); err != nil {
		return fail(err)
	}
	if spec.LoopbackUp {
		if err := testproc.LoopbackUp(); err != nil {
			return fail(err)
		}
	}
	lc := net.ListenConfig{KeepAlive: -1, Control: control(spec.Listener)}
	lc.SetMultipathTCP(spec.MPTCP)
	var lns []net.Listener
	var addrs []string
	for _, a := range spec.Listen {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			return fail(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	out := json.NewEncoder(os.Stdout)
	out.Encode(addrs)
	d := net.Dialer{KeepAlive: -1, Control: control(spec.Dial)}
	d.SetMultipathTCP(spec.DialMPTCP)
	var keep []net.Conn
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var i, n int
		if _, err := fmt.Sscanf(sc.Text(), "dial %d %d", &i, &n); err != nil {
			return fail(fmt.Errorf("command %q: %w", sc.Text(), err))
		}
		var pairs []pair
		for range n {
			c, err := d.Dial("tcp", addrs[i])
			if err != nil {
				return fail(err)
			}
			a, err := lns[i].Accept()
			if err != nil {
				return fail(err)
			}
			keep = append(keep, c, a)
			pairs = append(pairs, pair{Dialled: sockOf(c), Accepted: sockOf(a)})
		}
		out.Encode(pairs)
	}
	for _, c := range keep {
		c.Close()
	}
	return 0
}

// sockOf describes c.
func sockOf(c net.Conn) sock {
	s := sock{Local: c.LocalAddr().String(), Remote: c.RemoteAddr().String()}
	rc, _ := c.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) { s.FD = int(fd) })
	return s
}

// conns is a running conns helper.
type conns struct {
	t         testing.TB
	h         *testproc.Helper
	pid       int
	listeners []string
}

// startConns starts a conns helper in the cgroup with the spec, with
// cloneflags added to its clone flags.
func startConns(t testing.TB, cgroup string, spec connSpec, cloneflags uintptr) *conns {
	t.Helper()
	b, err := json.Marshal(spec)
	require.NoError(t, err)
	h, err := testproc.Start(t, testproc.Opts{
		Env:        []string{helperEnv + "=conns", "ENFORCE_TEST_SPEC=" + string(b)},
		Cgroup:     cgroup,
		Cloneflags: cloneflags,
	})
	require.NoError(t, err)
	c := &conns{t: t, h: h, pid: h.Cmd.Process.Pid}
	c.read(&c.listeners)
	return c
}

// read decodes the helper's next line into v.
func (c *conns) read(v any) {
	c.t.Helper()
	line, err := c.h.Stdout.ReadBytes('\n')
	require.NoError(c.t, err, "the helper ended")
	require.NoError(c.t, json.Unmarshal(line, v), "the helper said %q", line)
}

// dial has the helper make n connections to its listener i.
func (c *conns) dial(i, n int) []pair {
	c.t.Helper()
	_, err := fmt.Fprintf(c.h.Stdin, "dial %d %d\n", i, n)
	require.NoError(c.t, err)
	var pairs []pair
	c.read(&pairs)
	require.Len(c.t, pairs, n)
	return pairs
}

// values reads the options of the helper's socket s with the tests' own
// getsockopt, on a duplicate made with pidfd_getfd.
func (c *conns) values(s sock) sockopts.Values {
	c.t.Helper()
	return readFrom(c.t, c.pid, s.FD)
}

// readFrom reads the options of process pid's descriptor fd.
func readFrom(t testing.TB, pid, fd int) sockopts.Values {
	t.Helper()
	v, err := sockopts.ReadFrom(pid, fd)
	require.NoError(t, err)
	return v
}

// bare is what a socket nobody set reports: keepalive off, the system's
// values, no user timeout.
func bare(t testing.TB) sockopts.Values {
	t.Helper()
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	return sockopts.Values{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count}
}

// with is base with what a policy of Config c sets: keepalive on (off
// with c.Off), and each field that is not zero.
func with(base sockopts.Values, c keepalive.Config) sockopts.Values {
	base.KeepAlive = !c.Off
	if c.Idle != 0 {
		base.Idle = c.Idle
	}
	if c.Interval != 0 {
		base.Interval = c.Interval
	}
	if c.Count != 0 {
		base.Count = c.Count
	}
	if c.UserTimeout != 0 {
		base.UserTimeout = c.UserTimeout
	}
	return base
}

// assertPairs checks both ends of each pair against want.
func (c *conns) assertPairs(pairs []pair, want sockopts.Values, msg string) {
	c.t.Helper()
	for _, p := range pairs {
		assert.Equal(c.t, want, c.values(p.Dialled), "%s: the dialled end %s -> %s", msg, p.Dialled.Local, p.Dialled.Remote)
		assert.Equal(c.t, want, c.values(p.Accepted), "%s: the accepted end %s -> %s", msg, p.Accepted.Local, p.Accepted.Remote)
	}
}

// lab is what a test of policies needs: the BPF tests' lock, a bpffs of
// its own, a cgroup of its own, and at cleanup a check that every object
// of the project it made is gone.
type lab struct {
	t      testing.TB
	bpffs  string
	cgroup string
	before enforce.Objects
}

// newLab makes a lab; the test is skipped (failed in CI) where it cannot
// run: without root, cgroup v2 or BPF.
func newLab(t testing.TB) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		cgrouptest.Skip(t, "policies need root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)")
	}
	cgrouptest.Lock(t)
	l := &lab{t: t, bpffs: bpffs(t), cgroup: cgrouptest.New(t)}
	var err error
	l.before, err = enforce.LoadedObjects()
	require.NoError(t, err)
	t.Cleanup(func() {
		// Whatever the test left in force goes; then nothing of the
		// project may be left.
		ps, err := enforce.List(context.Background(), l.bpffs)
		assert.NoError(t, err)
		for _, p := range ps {
			_, err := enforce.Remove(context.Background(), l.bpffs, p.Cgroup)
			assert.NoError(t, err)
		}
		l.assertNothingLeft()
	})
	return l
}

// bpffs mounts a bpffs of the test's own.
func bpffs(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"))
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// enforce puts o on the lab's cgroup, with the lab's bpffs.
func (l *lab) enforce(o enforce.Options) *enforce.Result {
	l.t.Helper()
	if o.Cgroup == "" {
		o.Cgroup = l.cgroup
	}
	o.BPFFS = l.bpffs
	res, err := enforce.Enforce(context.Background(), o)
	require.NoError(l.t, err)
	return res
}

// list returns the policies in force.
func (l *lab) list() []enforce.Policy {
	l.t.Helper()
	ps, err := enforce.List(context.Background(), l.bpffs)
	require.NoError(l.t, err)
	return ps
}

// objectsFreed is how long the kernel may take to free a program's maps
// once the program is gone: they are put after an RCU grace period, which
// takes longer on a loaded machine.
const objectsFreed = 20 * time.Second

// assertNothingLeft checks that the project has no BPF object left that
// it did not have when the lab was made, and nothing in its bpffs. On a
// shared machine a policy put in force by hand, outside the tests' lock,
// may end or be replaced meanwhile: an object that was there before and
// has gone since is not the test's, and neither is one that the pins of
// another bpffs hold.
func (l *lab) assertNothingLeft() {
	l.t.Helper()
	var now, others enforce.Objects
	ok := assert.Eventually(l.t, func() bool {
		var err error
		now, err = enforce.LoadedObjects()
		if err != nil {
			return false
		}
		others = l.pinnedElsewhere()
		return subset(now.Programs, l.before.Programs, others.Programs) && subset(now.Maps, l.before.Maps, others.Maps) && subset(now.Links, l.before.Links, others.Links)
	}, objectsFreed, 10*time.Millisecond)
	if !ok {
		l.t.Errorf("the project's BPF objects: before %v; now %v, of which held by other bpffs mounts %v", l.before, now, others)
	}
	// A fresh bpffs holds the kernel's own maps.debug and progs.debug.
	_, err := os.Stat(filepath.Join(l.bpffs, "keepalive"))
	assert.ErrorIs(l.t, err, os.ErrNotExist, "the project's directory is left in bpffs")
}

// dump reads every socket of the network namespaces of the lab's cgroup
// with bpfsock's dump iterator, which needs a policy in force: the
// sockets of each namespace, the caller's first.
func (l *lab) dump() [][]bpfsock.Socket {
	l.t.Helper()
	k, err := bpfsock.LoadKernel()
	require.NoError(l.t, err)
	shared, err := bpfsock.ProjectIn(l.bpffs).OpenShared()
	require.NoError(l.t, err)
	defer shared.Close()
	prog, err := k.DumpIter(shared)
	require.NoError(l.t, err)
	defer prog.Close()
	nss, err := bpfsock.Namespaces(l.cgroup)
	require.NoError(l.t, err)
	defer func() {
		for _, ns := range nss {
			ns.Close()
		}
	}()
	socks, err := bpfsock.RunDump(context.Background(), prog, nss)
	require.NoError(l.t, err)
	out := make([][]bpfsock.Socket, len(nss))
	for i, ns := range nss {
		out[i] = socks[ns]
	}
	return out
}

// subset reports whether every id in ids is in one of of.
func subset(ids []uint32, of ...[]uint32) bool {
	for _, id := range ids {
		if !slices.ContainsFunc(of, func(ids []uint32) bool { return slices.Contains(ids, id) }) {
			return false
		}
	}
	return true
}

// pinnedElsewhere returns the project's objects that the pins in the
// project's directory of each bpffs mounted here, other than the lab's,
// hold: the links, their programs and the programs' maps, and the maps
// pinned. Pins that go while it looks are passed over.
func (l *lab) pinnedElsewhere() enforce.Objects {
	var o enforce.Objects
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return o
	}
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		i := slices.Index(f, "-")
		if i < 0 || i+1 >= len(f) || f[i+1] != "bpf" || len(f) < 5 || f[4] == l.bpffs {
			continue
		}
		filepath.WalkDir(filepath.Join(f[4], "keepalive"), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			if lk, err := link.LoadPinnedLink(path, nil); err == nil {
				if info, err := lk.Info(); err == nil {
					o.Links = append(o.Links, uint32(info.ID))
					if p, err := ebpf.NewProgramFromID(info.Program); err == nil {
						o.Programs = append(o.Programs, uint32(info.Program))
						if pi, err := p.Info(); err == nil {
							maps, _ := pi.MapIDs()
							for _, m := range maps {
								o.Maps = append(o.Maps, uint32(m))
							}
						}
						p.Close()
					}
				}
				lk.Close()
				return nil
			}
			if m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true}); err == nil {
				if info, err := m.Info(); err == nil {
					if id, ok := info.ID(); ok {
						o.Maps = append(o.Maps, uint32(id))
					}
				}
				m.Close()
			}
			return nil
		})
	}
	return o
}

// attached returns the ids of the programs attached to the cgroup at
// path for attach, as bpftool cgroup show lists them.
func attached(t testing.TB, path string, at ebpf.AttachType) []ebpf.ProgramID {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	res, err := link.QueryPrograms(link.QueryOptions{Target: int(f.Fd()), Attach: at})
	require.NoError(t, err)
	var ids []ebpf.ProgramID
	for _, p := range res.Programs {
		ids = append(ids, p.ID)
	}
	return ids
}

// runEnforce is a helper that calls Enforce with the Options in
// ENFORCE_TEST_OPTIONS (JSON) and prints its error, for a process with
// fewer capabilities than the test.
func runEnforce() int {
	var o enforce.Options
	if err := json.Unmarshal([]byte(os.Getenv("ENFORCE_TEST_OPTIONS")), &o); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := enforce.Enforce(context.Background(), o); err != nil {
		fmt.Println(err)
		return 1
	}
	return 0
}

// enforceAs runs Enforce with o in a child process started under setpriv
// with the capabilities drop (such as "-all" or "-net_admin,-sys_admin")
// removed from its bounding, inheritable and ambient sets, as root: its
// effective set is then what is left. With drop empty the child has the
// test's capabilities. It returns the child's output and exit status.
func enforceAs(t testing.TB, drop string, o enforce.Options) (string, int) {
	t.Helper()
	bin, err := testproc.Binary(false)
	require.NoError(t, err)
	b, err := json.Marshal(o)
	require.NoError(t, err)
	cmd := exec.Command(bin)
	if drop != "" {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			cgrouptest.Skip(t, "dropping capabilities needs setpriv (util-linux)")
		}
		cmd = exec.Command(setpriv, "--bounding-set="+drop, "--inh-caps="+drop, "--ambient-caps="+drop, "--", bin)
	}
	cmd.Env = append(os.Environ(), helperEnv+"=enforce", "ENFORCE_TEST_OPTIONS="+string(b))
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return strings.TrimSpace(string(out)), code
}

var (
	goBinaryOnce sync.Once
	goBinaryPath string
	goBinaryErr  error
)

// goBinary builds testdata/dialer statically (CGO_ENABLED=0), once per
// test binary.
func goBinary(t testing.TB) string {
	t.Helper()
	goBinaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keepalive-enforce-dialer-")
		if err != nil {
			goBinaryErr = err
			return
		}
		goBinaryPath = filepath.Join(dir, "dialer")
		cmd := exec.Command("go", "build", "-o", goBinaryPath, "./testdata/dialer")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			goBinaryErr = fmt.Errorf("go build ./testdata/dialer: %v\n%s", err, out)
		}
	})
	if goBinaryErr != nil {
		if _, err := exec.LookPath("go"); err != nil {
			cgrouptest.Skip(t, "building the static Go binary needs the go command: %v", err)
		}
		t.Fatal(goBinaryErr)
	}
	return goBinaryPath
}

// goDialer is the static Go binary, running.
type goDialer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	pid   int
}

// startGoDialer starts the static Go binary in the cgroup with args.
func startGoDialer(t testing.TB, cgroup string, args ...string) *goDialer {
	t.Helper()
	bin := goBinary(t)
	fd, err := unix.Open(cgroup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd, Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, testproc.Spawn(cmd.Start))
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &goDialer{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), pid: cmd.Process.Pid}
}

// pair has the binary make one connection to its own listener and
// returns its two descriptors.
func (g *goDialer) pair(t testing.TB) (dialled, accepted int) {
	t.Helper()
	_, err := io.WriteString(g.stdin, "dial\n")
	require.NoError(t, err)
	line, err := g.out.ReadString('\n')
	require.NoError(t, err, "the Go binary ended")
	f := strings.Fields(line)
	require.Len(t, f, 2, "the Go binary said %q", line)
	dialled, err = strconv.Atoi(f[0])
	require.NoError(t, err)
	accepted, err = strconv.Atoi(f[1])
	require.NoError(t, err)
	return dialled, accepted
}
