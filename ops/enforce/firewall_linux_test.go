package enforce_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
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
	"github.com/keepalive-go/keepalive/internal/netlab"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// The end-to-end proof, in the firewall lab (internal/netlab): clients no
// one here configured hold idle flows to servers through a firewall that
// forgets a flow after labConntrack of silence. The clients run in the
// lab's client network namespace, each in one of two cgroups of the
// test's: the one under the policy or one without. The policy keeps the
// flows of the first alive, those of the second are forgotten, and when
// the firewall then forgets every flow at once, the policy's keepalive
// declares each of the first dead within its bound.
//
// The sock_ops program runs for every socket of the cgroup, whatever
// network namespace its process is in; the iterator walks the sockets of
// one namespace at a time, so Enforce runs it in each namespace that a
// process of the cgroup is in: here the lab's client namespace, found
// through the clients started before the policy.
const labConntrack = 5 * time.Second

// labPolicy is the policy on the clients' cgroup: the first probe after
// 2 s of silence, well within the firewall's timeout, and a dead peer
// declared dead 2 s + 2 × 1 s = 4 s after the last packet it sent. It sets
// no user timeout, so that the bound is Idle + Interval × Count alone.
var labPolicy = keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 2}

// mptcpCloseTimeout is net.mptcp.close_timeout in the lab's client
// namespace.
const mptcpCloseTimeout = 3 * time.Second

// labProgram is a client program the lab runs: it connects to one of the
// lab's servers and sends what the test writes to its standard input.
type labProgram struct {
	name string
	pkg  string // the Debian package that has it
	// cmd returns its command line, for the echo server at echo and
	// PostgreSQL at pg.
	cmd func(t *testing.T, echo, pg netip.AddrPort) *exec.Cmd
	// postgres: it talks to PostgreSQL, not to the echo server.
	postgres bool
	// keepAlive: it turns SO_KEEPALIVE on itself, keeping the system's
	// values, as libpq does by default.
	keepAlive bool
	// mptcp: it dials Multipath TCP, and the echo server, a Go listener,
	// accepts Multipath TCP (Go's default): the connection is MPTCP end
	// to end, and the policy sets its subflow (see TestMPTCP).
	mptcp bool
}

// pythonClient is a line client in Python, whose sockets leave keepalive
// off: it sends each line of its standard input and prints each line it
// receives, and prints the error when the connection fails.
const pythonClient = `
import os, socket, sys, threading
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def send():
    for line in sys.stdin:
        s.sendall(line.encode())
threading.Thread(target=send, daemon=True).start()
try:
    for line in s.makefile():
        print(line, end="", flush=True)
except OSError as e:
    print(e, file=sys.stderr, flush=True)
    os._exit(1)
print("closed", file=sys.stderr, flush=True)
os._exit(1)
`

var labPrograms = []labProgram{
	{name: "go", cmd: func(t *testing.T, echo, _ netip.AddrPort) *exec.Cmd {
		// Statically linked, keepalive off: net.Dialer{KeepAlive: -1}.
		return exec.Command(goBinary(t), "-keepalive", "-1s", "-connect", echo.String())
	}},
	{name: "go-mptcp", mptcp: true, cmd: func(t *testing.T, echo, _ netip.AddrPort) *exec.Cmd {
		return exec.Command(goBinary(t), "-keepalive", "-1s", "-mptcp", "-connect", echo.String())
	}},
	{name: "python3", pkg: "python3", cmd: func(_ *testing.T, echo, _ netip.AddrPort) *exec.Cmd {
		return exec.Command("python3", "-u", "-c", pythonClient, echo.Addr().String(), strconv.Itoa(int(echo.Port())))
	}},
	{name: "socat", pkg: "socat", cmd: func(_ *testing.T, echo, _ netip.AddrPort) *exec.Cmd {
		return exec.Command("socat", "STDIO", "TCP:"+echo.String())
	}},
	{name: "psql", pkg: "postgresql-client", postgres: true, keepAlive: true, cmd: func(_ *testing.T, _, pg netip.AddrPort) *exec.Cmd {
		return exec.Command("psql", "-X", "-q", "-A", "-t", "-h", pg.Addr().String(), "-p", strconv.Itoa(int(pg.Port())), "-U", "postgres", "-d", "postgres")
	}},
}

// placement is where a lab client runs.
type placement int

const (
	before  placement = iota // in the policy's cgroup, started before the policy
	after                    // in the policy's cgroup, started after it
	outside                  // in a cgroup of the test's without a policy
)

func (p placement) String() string {
	return [...]string{"before the policy", "after the policy", "outside the cgroup"}[p]
}

func TestFirewall(t *testing.T) {
	for _, p := range labPrograms {
		if p.pkg != "" {
			needProgram(t, p.cmd(t, netip.AddrPort{}, netip.AddrPort{}).Path, p.pkg)
		}
	}
	l := newLab(t)
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: labConntrack, Tag: "kaenf"})
	other := cgrouptest.New(t)
	var sys keepalive.Config
	var clientNetns uint64
	require.NoError(t, lab.Client(func() error {
		// The client namespace's own defaults, which its sockets start
		// with; and its inode, which the iterator reports.
		var err error
		if sys, err = keepalive.SystemDefaults(); err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
			return err
		}
		clientNetns = st.Ino
		// How long a Multipath TCP connection outlives its last subflow:
		// 60 s by default, shortened here.
		return os.WriteFile("/proc/sys/net/mptcp/close_timeout", []byte(strconv.Itoa(int(mptcpCloseTimeout/time.Second))), 0)
	}))
	echo := startEcho(t, lab)
	pg := startLabPostgres(t, lab)
	start := lab.ClientStarter(t)

	var clients []*labClient
	run := func(where placement) {
		cg := l.cgroup
		if where == outside {
			cg = other
		}
		for _, p := range labPrograms {
			c := startLabClient(t, start, cg, p, where, echo, pg)
			clients = append(clients, c)
		}
	}
	run(before)
	run(outside)
	for _, c := range clients {
		c.roundTrip(t, "hello", 10*time.Second)
	}

	server := netip.PrefixFrom(lab.ServerAddr(), 32)
	res := l.enforce(enforce.Options{Config: labPolicy, Filter: enforce.Filter{Remote: []netip.Prefix{server}}})
	assert.Equal(t, 2, res.Namespaces, "the test's network namespace and the lab's client namespace")
	assert.Len(t, res.Existing, len(labPrograms), "the connections of the clients started before the policy: %v", res.Existing)
	for _, e := range res.Existing {
		assert.Equal(t, clientNetns, e.Netns, "%v", e)
		assert.Equal(t, lab.ServerAddr(), e.Remote.Addr(), "%v", e)
		assert.Equal(t, enforce.FieldKeepAlive|enforce.FieldIdle|enforce.FieldInterval|enforce.FieldCount, e.Set, "%v", e)
	}
	run(after)
	for _, c := range clients[2*len(labPrograms):] {
		c.roundTrip(t, "hello", 10*time.Second)
	}

	base := sockopts.Values{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count}
	t.Run("values", func(t *testing.T) {
		for _, c := range clients {
			want := with(base, labPolicy)
			if c.where == outside {
				want = base
				want.KeepAlive = c.prog.keepAlive
			}
			v, err := sockopts.Read(c.sock)
			require.NoError(t, err)
			if c.prog.mptcp {
				// The process's own MPTCP socket keeps its own values;
				// the subflow under it carries the policy's.
				assert.Equal(t, sockopts.Values{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count, MPTCP: true}, v, "%s: its MPTCP socket %s -> %s, read back", c, c.local, c.remote)
				v = subflowOf(t, l, c.local, c.remote)
			}
			assert.Equal(t, want, v, "%s: its socket %s -> %s, read back", c, c.local, c.remote)
		}
		ps := l.list()
		require.Len(t, ps, 1)
		// Counted exactly. libpq turns SO_KEEPALIVE on before connecting,
		// so the policy's values win as the connection is established and
		// no call of psql's is kept from changing them.
		assert.Equal(t, enforce.Counts{Dialled: uint64(len(labPrograms)), Existing: uint64(len(labPrograms))}, ps[0].Counts)
	})

	// Every flow silent past the firewall's timeout, then asked for an
	// answer; the clients wait and ask at the same time, each on a
	// goroutine of its own, so that no client waits for another.
	silence := labConntrack + 3*time.Second
	until := time.Now().Add(silence)
	dropped := lab.Dropped()
	t.Logf("every flow silent for %v; the firewall forgets a flow after %v", silence, labConntrack)
	answered := make([]chan bool, len(clients))
	for i, c := range clients {
		answered[i] = make(chan bool, 1)
		go func() {
			time.Sleep(time.Until(until))
			wait := 5 * time.Second
			if c.where == outside {
				wait = 3 * time.Second
			}
			answered[i] <- c.tryRoundTrip("still there?", wait)
		}()
	}
	t.Run("silent", func(t *testing.T) {
		for i, c := range clients {
			t.Run(c.String(), func(t *testing.T) {
				if c.where == outside {
					assert.False(t, <-answered[i], "the flow of a client outside the policy should be forgotten by the firewall")
				} else {
					assert.True(t, <-answered[i], "no answer within 5s; its standard error: %s", c.stderr)
				}
			})
		}
	})
	assert.Greater(t, lab.Dropped(), dropped, "the firewall dropped the forgotten flows' packets")

	// The firewall forgets every flow at once. Each socket under the
	// policy is declared dead (TCP_INFO's state goes to CLOSE) no sooner
	// than the bound after the last packet it received, and no later than
	// the bound × 1.15 + 200 ms, as TestFirewallCutFlows asks of the
	// library. The last packet is the one TCP_INFO names once the socket
	// is closed: an answer to a probe may still be on its way through the
	// lab when the firewall forgets the flow. Each socket is watched from
	// the cut on by a goroutine of its own.
	bound, err := labPolicy.DetectionTime()
	require.NoError(t, err)
	limit := bound*115/100 + 200*time.Millisecond
	type death struct {
		silence time.Duration // from the last packet received to CLOSE
		at      time.Time     // when CLOSE was seen
		closed  bool
		seen    []string
	}
	deaths := make([]chan death, len(clients))
	lab.CutFlows()
	cut := time.Now()
	for i, c := range clients {
		if c.where == outside {
			continue
		}
		deaths[i] = make(chan death, 1)
		go func() {
			var d death
			d.silence, d.closed, d.seen = c.waitClosed(cut.Add(3 * bound))
			d.at = time.Now()
			deaths[i] <- d
		}()
	}
	t.Run("cut", func(t *testing.T) {
		for i, c := range clients {
			if c.where == outside {
				continue
			}
			t.Run(c.String(), func(t *testing.T) {
				d := <-deaths[i]
				if !d.closed || d.silence > limit {
					t.Logf("its socket, from the cut on:\n%s", strings.Join(d.seen, "\n"))
				}
				require.True(t, d.closed, "still %s %v after the cut; the bound is %v", tcpStates[tcpInfo(t, c.sock).State], d.at.Sub(cut), bound)
				t.Logf("detect: config=%s side=dialed bound=%v measured=%.3fs ratio=%.3f (%s)", labPolicy, bound, d.silence.Seconds(), float64(d.silence)/float64(bound), c)
				// TCP_INFO counts in jiffies: the last packet's time is
				// known to within one.
				assert.GreaterOrEqual(t, d.silence, bound-20*time.Millisecond, "declared dead %v before the bound %v", bound-d.silence, bound)
				assert.LessOrEqual(t, d.silence, limit, "declared dead %v after the limit %v (bound %v)", d.silence-limit, limit, bound)

				// The client's own report. libpq reads nothing while psql
				// waits for a query; the next one meets the error, which
				// it reports only as a lost connection. A Multipath TCP
				// connection outlives its last subflow for
				// net.mptcp.close_timeout, and is then closed: the read
				// fails with ENOTCONN.
				report, after, within := "connection timed out", time.Duration(0), 10*time.Second
				switch {
				case c.prog.postgres:
					io.WriteString(c.stdin, "SELECT 'after';\n")
					report = "connection to server was lost"
				case c.prog.mptcp:
					report, after, within = "transport endpoint is not connected", mptcpCloseTimeout-200*time.Millisecond, mptcpCloseTimeout+5*time.Second
				}
				select {
				case <-c.exited:
					ended := c.exitedAt.Sub(d.at)
					t.Logf("%s ended %v after its socket was seen declared dead: %s", c, ended.Round(time.Millisecond), strings.TrimSpace(c.stderr.String()))
					if after > 0 {
						assert.GreaterOrEqual(t, ended, after, "the client ended before net.mptcp.close_timeout (%v) had passed", mptcpCloseTimeout)
					}
				case <-time.After(time.Until(d.at.Add(within))):
					t.Errorf("the client is still running %v after its connection was declared dead", within)
				}
				assert.Contains(t, strings.ToLower(c.stderr.String()), report, "the client's own report")
			})
		}
	})
	// The flows outside the policy carry data the firewall drops, which is
	// sent again for many minutes: no keepalive, and still established.
	for _, c := range clients {
		if c.where == outside {
			assert.Equal(t, "ESTABLISHED", tcpStates[tcpInfo(t, c.sock).State], "%s", c)
		}
	}

	// The policy ends: nothing of the project is left in the kernel or in
	// bpffs, and a client started in the cgroup then is bare.
	_, err = enforce.Remove(context.Background(), l.bpffs, l.cgroup)
	require.NoError(t, err)
	l.assertNothingLeft()
	for _, p := range labPrograms {
		c := startLabClient(t, start, l.cgroup, p, after, echo, pg)
		want := base
		want.KeepAlive, want.MPTCP = p.keepAlive, p.mptcp
		v, err := sockopts.Read(c.sock)
		require.NoError(t, err)
		assert.Equal(t, want, v, "%s, started once the policy had ended", p.name)
	}
}

// needProgram skips (in CI fails) a test whose program is not installed.
func needProgram(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		cgrouptest.Skip(t, "%s is not installed (Debian package %s): %v", name, pkg, err)
	}
}

// startEcho starts a line echo server in the lab's server namespace, with
// keepalive off, so that only the clients' probes cross the firewall.
func startEcho(t *testing.T, lab *netlab.Lab) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		var err error
		ln, err = (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", net.JoinHostPort(lab.ServerAddr().String(), "0"))
		return err
	}))
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(c, c)
		}
	}()
	return netip.AddrPortFrom(lab.ServerAddr(), uint16(ln.Addr().(*net.TCPAddr).Port))
}

// startLabPostgres runs a PostgreSQL server of the test's own in the lab's
// server namespace, on the server's address and port 5432, that trusts
// the client's address; it is stopped at cleanup. PostgreSQL refuses to
// run as root: it runs as the postgres user that Debian's package makes.
func startLabPostgres(t *testing.T, lab *netlab.Lab) netip.AddrPort {
	t.Helper()
	initdbs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(initdbs) == 0 {
		cgrouptest.Skip(t, "PostgreSQL is not installed (Debian package postgresql): no /usr/lib/postgresql/*/bin/initdb")
	}
	slices.Sort(initdbs)
	bin := filepath.Dir(initdbs[len(initdbs)-1])
	u, err := user.Lookup("postgres")
	if err != nil {
		cgrouptest.Skip(t, "PostgreSQL refuses to run as root and there is no postgres user to run it as: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	dir, err := os.MkdirTemp("", fmt.Sprintf("keepalive-enforce-pg-%d-", os.Getpid()))
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	require.NoError(t, os.Chown(dir, uid, gid))
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")
	initdb.Dir = dir
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := initdb.CombinedOutput()
	require.NoError(t, err, "initdb: %s", out)
	hba, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = fmt.Fprintf(hba, "host all all %s/32 trust\n", lab.ClientAddr())
	require.NoError(t, err)
	require.NoError(t, hba.Close())

	addr := netip.AddrPortFrom(lab.ServerAddr(), 5432)
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(int(addr.Port())), "-k", dir,
		"-c", "listen_addresses="+addr.Addr().String(), "-c", "fsync=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20")
	cmd.Dir = dir
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, lab.ServerStarter(t)(cmd.Start))
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		// SIGQUIT: immediate shutdown; its clients' connections are gone
		// by then, or dead.
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log.String(), "database system is ready to accept connections") {
		select {
		case <-exited:
			t.Fatalf("postgres ended: %s", log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("postgres not ready after 30s: %s", log)
		}
	}
	return addr
}

// labClient is a client program running in the lab's client namespace.
type labClient struct {
	prog  labProgram
	where placement
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	// exited is closed once the program has ended, at exitedAt.
	exited   chan struct{}
	exitedAt time.Time
	stderr   *syncBuffer
	// sock is a duplicate of its socket, made with pidfd_getfd: the same
	// socket, which the test reads.
	sock          *os.File
	local, remote netip.AddrPort
}

func (c *labClient) String() string { return c.prog.name + " " + c.where.String() }

// startLabClient starts program p in the cgroup cg, through start (which
// puts it in the lab's client namespace), and finds its socket to the
// server.
func startLabClient(t *testing.T, start func(func() error) error, cg string, p labProgram, where placement, echo, pg netip.AddrPort) *labClient {
	t.Helper()
	c := &labClient{prog: p, where: where, cmd: p.cmd(t, echo, pg), lines: make(chan string, 16), exited: make(chan struct{}), stderr: &syncBuffer{}}
	c.remote = echo
	if p.postgres {
		c.remote = pg
	}
	var err error
	c.stdin, err = c.cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	c.cmd.Stderr = c.stderr
	fd, err := unix.Open(cg, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fd)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, UseCgroupFD: true, CgroupFD: fd}
	require.NoError(t, start(c.cmd.Start))
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		c.cmd.Wait()
		c.exitedAt = time.Now()
		close(c.exited)
	}()
	t.Cleanup(func() {
		c.stdin.Close()
		c.cmd.Process.Kill()
		<-c.exited
	})
	c.sock, c.local = findSocket(t, c.cmd.Process.Pid, c.remote, c.exited, c.stderr)
	t.Cleanup(func() { c.sock.Close() })
	return c
}

// ask returns the line that makes the client's server answer word, and
// the answer.
func (c *labClient) ask(word string) (line, answer string) {
	if c.prog.postgres {
		return "SELECT '" + word + "';", word
	}
	return word, word
}

// roundTrip has the client's server answer, and fails the test unless the
// answer comes within d.
func (c *labClient) roundTrip(t *testing.T, word string, d time.Duration) {
	t.Helper()
	require.True(t, c.tryRoundTrip(word, d), "%s: no answer to %q within %v; its standard error: %s", c, word, d, c.stderr)
}

func (c *labClient) tryRoundTrip(word string, d time.Duration) bool {
	line, answer := c.ask(word)
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		return false
	}
	select {
	case got := <-c.lines:
		return got == answer
	case <-time.After(d):
		return false
	}
}

// waitClosed polls the client's socket until the kernel has closed it
// (TCP_INFO's state CLOSE: declared dead) or until deadline. It returns
// how long before it saw it closed the socket had received its last
// packet, as TCP_INFO counts it, which is how the kernel counts the
// silence that keepalive ends, and what it saw on the way: each change of
// the state, of the count of unanswered probes, or of the last packet's
// time.
func (c *labClient) waitClosed(deadline time.Time) (silence time.Duration, closed bool, seen []string) {
	var prev unix.TCPInfo
	var prevLast time.Time
	start := time.Now()
	for {
		info, err := unix.GetsockoptTCPInfo(int(c.sock.Fd()), unix.IPPROTO_TCP, unix.TCP_INFO)
		now := time.Now()
		if err != nil {
			seen = append(seen, err.Error())
		} else {
			// Both counters are milliseconds since, kept in jiffies.
			silence = time.Duration(min(info.Last_ack_recv, info.Last_data_recv)) * time.Millisecond
			last := now.Add(-silence)
			if len(seen) == 0 || info.State != prev.State || info.Probes != prev.Probes || last.Sub(prevLast).Abs() > 20*time.Millisecond {
				seen = append(seen, fmt.Sprintf("+%v %s, %d probes unanswered, last packet %v before", now.Sub(start).Round(time.Millisecond), tcpStates[info.State], info.Probes, silence))
				prev, prevLast = *info, last
			}
			if info.State == tcpClose {
				return silence, true, seen
			}
		}
		if now.After(deadline) {
			return silence, false, seen
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// findSocket finds the TCP socket of process pid connected to remote,
// among its descriptors, waiting for it to connect, and returns a
// duplicate of it (pidfd_getfd) and its local address. It fails the test
// if the process ends first.
func findSocket(t *testing.T, pid int, remote netip.AddrPort, exited <-chan struct{}, stderr fmt.Stringer) (*os.File, netip.AddrPort) {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	require.NoError(t, err)
	defer unix.Close(pidfd)
	deadline := time.Now().Add(15 * time.Second)
	for {
		entries, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, e := range entries {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
			if err != nil || !strings.HasPrefix(link, "socket:") {
				continue
			}
			fd, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			d, err := unix.PidfdGetfd(pidfd, fd, 0)
			if err != nil {
				continue
			}
			peer, perr := unix.Getpeername(d)
			local, lerr := unix.Getsockname(d)
			if perr == nil && lerr == nil && sockaddrPort(peer) == remote {
				return os.NewFile(uintptr(d), fmt.Sprintf("pid %d fd %d", pid, fd)), sockaddrPort(local)
			}
			unix.Close(d)
		}
		select {
		case <-exited:
			t.Fatalf("process %d ended before it connected to %v: %s", pid, remote, stderr)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d has no connection to %v after 15s", pid, remote)
		}
	}
}

// sockaddrPort is an IPv4 or IPv6 socket address as an AddrPort, IPv4-
// mapped addresses unmapped.
func sockaddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
	}
	return netip.AddrPort{}
}

// The TCP states TCP_INFO reports (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpClose       = 7
)

var tcpStates = map[uint8]string{tcpEstablished: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT", tcpClose: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}

// tcpInfo reads the socket's TCP_INFO.
func tcpInfo(t *testing.T, f *os.File) *unix.TCPInfo {
	t.Helper()
	info, err := unix.GetsockoptTCPInfo(int(f.Fd()), unix.IPPROTO_TCP, unix.TCP_INFO)
	require.NoError(t, err)
	return info
}

// syncBuffer is a bytes.Buffer that several goroutines may use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
