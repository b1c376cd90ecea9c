// Package netlab builds a small routed network for tests out of three Linux
// network namespaces: a client, a stateful firewall and a server.
//
//	client 10.231.1.2/24 ── 10.231.1.1 firewall 10.231.2.1 ── 10.231.2.2/24 server
//
// The firewall forwards between its two veth links and filters with
// nftables the way production firewalls do: it accepts packets of
// established and related flows and the SYN that opens a new flow, and drops
// everything else. Its connection tracking forgets a flow that carries no
// packets for [Options.ConntrackTimeout] and, with
// net.netfilter.nf_conntrack_tcp_loose=0, never adopts a flow it has
// forgotten: from then on every packet of that flow is dropped, and neither
// end is told. With [Options.Reset] it answers such a packet with a TCP
// reset instead, as many cloud load balancers do; with [Options.Loss] it
// also loses a share of all packets at random, as a poor link does.
//
// The addresses exist only inside the lab's namespaces, so labs of
// concurrent tests do not see each other. A lab needs root, the ip command
// (iproute2) and the nft command (nftables); [New] skips the test when one
// is missing.
package netlab

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Options configures a [Lab].
type Options struct {
	// ConntrackTimeout is how long the firewall remembers an established
	// TCP flow that carries no packets
	// (net.netfilter.nf_conntrack_tcp_timeout_established in the firewall's
	// namespace). It must be a whole number of seconds. Zero leaves the
	// kernel's default, 5 days.
	ConntrackTimeout time.Duration

	// Reset makes the firewall answer a TCP packet of a flow it does not
	// know (one it has forgotten, or never saw open) with a TCP reset to
	// the packet's sender (nft "reject with tcp reset"), instead of
	// dropping it without a word. False drops it.
	Reset bool

	// Loss is the percentage of packets, from 0 to 100, that the firewall
	// loses at random, in both directions, before its connection tracking
	// sees them (nft "numgen random mod 100 < Loss" in a prerouting chain
	// of priority raw): a lost packet does not keep its flow known, as a
	// packet lost on the link before a middlebox does not. Zero loses
	// none.
	Loss int

	// Tag is put, with the process id and a sequence number, into the name
	// of each of the lab's namespaces, so that labs made by different tests
	// and processes at the same time do not collide. Keep it short. Empty
	// means "netlab".
	Tag string
}

// The lab's addresses (RFC 1918), which exist only inside its namespaces.
var (
	clientAddr       = netip.MustParseAddr("10.231.1.2")
	firewallClientIP = netip.MustParseAddr("10.231.1.1")
	firewallServerIP = netip.MustParseAddr("10.231.2.1")
	serverAddr       = netip.MustParseAddr("10.231.2.2")
)

// ruleset returns the firewall's nftables ruleset for o. The counter
// "dropped" counts what the forward chain drops or rejects, the counter
// "lost" what the loss chain loses.
func ruleset(o Options) string {
	var b strings.Builder
	b.WriteString(`table inet netlab {
	counter dropped {
	}
	counter lost {
	}
`)
	if o.Loss > 0 {
		// numgen's value is below its modulus: "< 100" is refused.
		cond := fmt.Sprintf("numgen random mod 100 < %d ", o.Loss)
		if o.Loss == 100 {
			cond = ""
		}
		fmt.Fprintf(&b, `	chain loss {
		type filter hook prerouting priority raw; policy accept;
		%scounter name "lost" drop
	}
`, cond)
	}
	b.WriteString(`	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state established,related accept
		tcp flags & (fin | syn | rst | ack) == syn ct state new accept
`)
	if o.Reset {
		b.WriteString("\t\tmeta l4proto tcp counter name \"dropped\" reject with tcp reset\n")
	}
	b.WriteString(`		counter name "dropped" drop
	}
}
`)
	return b.String()
}

// cmdTimeout bounds each ip or nft command the lab runs.
const cmdTimeout = 30 * time.Second

var seq atomic.Int64

// role indexes the lab's namespaces.
type role int

const (
	client role = iota
	firewall
	server
	numRoles
)

var roleName = [numRoles]string{"client", "fw", "server"}

// Lab is a client, a firewall and a server, each in its own network
// namespace. It is made by [New]; the zero Lab is not usable. Its methods
// may be called from several goroutines at once, except those that fail
// the test, which must be called from the test's goroutine.
type Lab struct {
	t     testing.TB
	names [numRoles]string
	ns    [numRoles]*os.File
}

// New builds a lab and registers its removal with t.Cleanup: the namespaces,
// and with them the links, addresses, routes, ruleset and tracked flows, are
// deleted when the test ends.
//
// New skips the test, giving the reason, when the process is not root, when
// ip or nft is not installed, or when network namespaces cannot be made. When
// the environment variable CI is set, each of these fails the test instead,
// since there the lab must run. Any other failure fails the test.
func New(t testing.TB, o Options) *Lab {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf
	}
	if o.ConntrackTimeout < 0 || o.ConntrackTimeout%time.Second != 0 {
		t.Fatalf("netlab: ConntrackTimeout %v is not a whole, non-negative number of seconds", o.ConntrackTimeout)
	}
	if o.Loss < 0 || o.Loss > 100 {
		t.Fatalf("netlab: Loss %d is not a percentage from 0 to 100", o.Loss)
	}
	if os.Geteuid() != 0 {
		skip("netlab: network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")
	}
	for _, cmd := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(cmd); err != nil {
			skip("netlab: %s is not installed (Debian package %s): %v", cmd, map[string]string{"ip": "iproute2", "nft": "nftables"}[cmd], err)
		}
	}
	tag := o.Tag
	if tag == "" {
		tag = "netlab"
	}
	removeStale()
	l := &Lab{t: t}
	id := fmt.Sprintf("%s-%d-%d", tag, os.Getpid(), seq.Add(1))
	for r := range numRoles {
		name := id + "-" + roleName[r]
		if out, err := command("ip", "netns", "add", name); err != nil {
			skip("netlab: cannot make a network namespace: %v: %s", err, out)
		}
		t.Cleanup(func() {
			if l.ns[r] != nil {
				l.ns[r].Close()
			}
			if out, err := command("ip", "netns", "delete", name); err != nil {
				t.Errorf("netlab: removing namespace %s: %v: %s", name, err, out)
			}
		})
		l.names[r] = name
		f, err := os.Open("/run/netns/" + name)
		if err != nil {
			t.Fatalf("netlab: %v", err)
		}
		l.ns[r] = f
	}
	if err := l.build(o); err != nil {
		t.Fatal(err)
	}
	return l
}

// staleName matches the namespaces New names, TAG-PID-SEQ-ROLE.
var staleName = regexp.MustCompile(`^.+-([0-9]+)-[0-9]+-(client|fw|server)$`)

// removeStale deletes the namespaces of labs whose process has died without
// its cleanups running (a test binary killed or timed out), so that they do
// not pile up on a developer's machine. Errors are ignored: the namespace
// stays, and the next New tries again.
func removeStale() {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		m := staleName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || pid == os.Getpid() || !errors.Is(unix.Kill(pid, 0), unix.ESRCH) {
			continue
		}
		command("ip", "netns", "delete", e.Name())
	}
}

// build wires the namespaces together and sets up the firewall.
func (l *Lab) build(o Options) error {
	c, f, s := l.names[client], l.names[firewall], l.names[server]
	// One ip -batch per namespace; the firewall's ends of the veth pairs
	// exist once the client's and the server's batches have run.
	batches := []struct{ netns, script string }{
		{c, fmt.Sprintf(`link add c0 type veth peer name f0 netns %s
addr add %s/24 dev c0
link set lo up
link set c0 up
route add default via %s
`, f, clientAddr, firewallClientIP)},
		{s, fmt.Sprintf(`link add s0 type veth peer name f1 netns %s
addr add %s/24 dev s0
link set lo up
link set s0 up
route add default via %s
`, f, serverAddr, firewallServerIP)},
		{f, fmt.Sprintf(`addr add %s/24 dev f0
addr add %s/24 dev f1
link set lo up
link set f0 up
link set f1 up
`, firewallClientIP, firewallServerIP)},
	}
	for _, b := range batches {
		if out, err := commandStdin([]byte(b.script), "ip", "-n", b.netns, "-batch", "-"); err != nil {
			return fmt.Errorf("netlab: ip -n %s -batch: %v: %s", b.netns, err, out)
		}
	}
	// The ruleset first: its ct expressions load connection tracking into
	// the namespace, and with it the net.netfilter sysctls.
	if out, err := commandStdin([]byte(ruleset(o)), "ip", "netns", "exec", f, "nft", "-f", "-"); err != nil {
		return fmt.Errorf("netlab: nft -f: %v: %s", err, out)
	}
	sysctls := [][2]string{
		{"net/ipv4/ip_forward", "1"},
		{"net/netfilter/nf_conntrack_tcp_loose", "0"},
	}
	if o.ConntrackTimeout > 0 {
		sysctls = append(sysctls, [2]string{"net/netfilter/nf_conntrack_tcp_timeout_established", strconv.Itoa(int(o.ConntrackTimeout / time.Second))})
	}
	return l.run(firewall, func() error {
		for _, s := range sysctls {
			// /proc/sys/net belongs to the network namespace of the
			// thread that opens it.
			if err := os.WriteFile("/proc/sys/"+s[0], []byte(s[1]), 0); err != nil {
				return fmt.Errorf("netlab: sysctl: %w", err)
			}
		}
		return nil
	})
}

// Client runs fn on an operating system thread that is in the client's
// namespace, and returns fn's result. Sockets fn creates (dialed, listening)
// belong to that namespace for their whole life and may be used from any
// goroutine once fn has returned; so do processes fn starts with os/exec.
// Goroutines that fn starts run in the process's own namespace. fn runs on
// a goroutine of its own, so it must not call t.FailNow or its kin; a panic
// in fn is raised again in the caller.
func (l *Lab) Client(fn func() error) error { return l.run(client, fn) }

// Server runs fn on an operating system thread that is in the server's
// namespace, as [Lab.Client] does for the client's.
func (l *Lab) Server(fn func() error) error { return l.run(server, fn) }

// ClientStarter returns a function that starts processes in the client's
// namespace: it calls start, such as an exec.Cmd's Start, on an operating
// system thread that stays in the namespace until the test ends. A child
// gets its parent-death signal (SysProcAttr.Pdeathsig) when the thread
// that started it ends, so a process started this way is signalled only
// when the test ends, or when the test binary dies; register its stop
// with t.Cleanup after calling ClientStarter, so that it stops first.
// ClientStarter fails the test if it cannot enter the namespace, so it
// must be called from the test's goroutine; the function it returns may
// be called from any goroutine until the test ends.
func (l *Lab) ClientStarter(t testing.TB) func(start func() error) error {
	t.Helper()
	return l.starter(t, client)
}

// ServerStarter is [Lab.ClientStarter] for the server's namespace.
func (l *Lab) ServerStarter(t testing.TB) func(start func() error) error {
	t.Helper()
	return l.starter(t, server)
}

func (l *Lab) starter(t testing.TB, r role) func(start func() error) error {
	t.Helper()
	starts := make(chan func())
	ready := make(chan error, 1)
	go func() {
		// Left locked: the thread ends with the goroutine instead of
		// going back to the runtime in the lab's namespace.
		runtime.LockOSThread()
		if err := unix.Setns(int(l.ns[r].Fd()), unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("netlab: entering namespace %s: %w", l.names[r], os.NewSyscallError("setns", err))
			return
		}
		ready <- nil
		for f := range starts {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	ended := false
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		ended = true
		close(starts)
	})
	return func(start func() error) error {
		done := make(chan error, 1)
		mu.Lock()
		if ended {
			mu.Unlock()
			return fmt.Errorf("netlab: the test has ended; nothing more starts in namespace %s", l.names[r])
		}
		starts <- func() { done <- start() }
		mu.Unlock()
		return <-done
	}
}

// ClientAddr returns the client's address, from which its connections
// leave.
func (l *Lab) ClientAddr() netip.Addr { return clientAddr }

// ServerAddr returns the server's address. A listener the server opens on
// it, or on the unspecified address, is reached from the client through the
// firewall.
func (l *Lab) ServerAddr() netip.Addr { return serverAddr }

// CutFlows makes the firewall forget every flow it tracks, as a firewall's
// nightly clean-up, restart or failover does: from then on it drops every
// packet of an established connection, and tells neither end. New
// connections still pass. CutFlows fails the test if it cannot, so it must
// be called from the test's goroutine.
func (l *Lab) CutFlows() {
	l.t.Helper()
	if err := l.run(firewall, flushConntrack); err != nil {
		l.t.Fatal(err)
	}
}

// Dropped returns how many packets the firewall has dropped, or answered
// with a reset, because it did not know their flow, since the lab was
// made. It fails the test if it cannot read the count, so it must be called
// from the test's goroutine.
func (l *Lab) Dropped() uint64 {
	l.t.Helper()
	return l.counter("dropped")
}

// Lost returns how many packets the firewall has lost at random
// ([Options.Loss]) since the lab was made. It fails the test if it cannot
// read the count, so it must be called from the test's goroutine.
func (l *Lab) Lost() uint64 {
	l.t.Helper()
	return l.counter("lost")
}

// counter reads the packet count of one of the ruleset's named counters.
func (l *Lab) counter(name string) uint64 {
	l.t.Helper()
	out, err := command("ip", "netns", "exec", l.names[firewall], "nft", "list", "counter", "inet", "netlab", name)
	if err != nil {
		l.t.Fatalf("netlab: nft list counter: %v: %s", err, out)
	}
	m := packetsRE.FindSubmatch(out)
	if m == nil {
		l.t.Fatalf("netlab: no packet count in nft's output: %s", out)
	}
	n, err := strconv.ParseUint(string(m[1]), 10, 64)
	if err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	return n
}

var packetsRE = regexp.MustCompile(`packets (\d+) bytes`)

// ClientStat returns one of the client namespace's TCP/IP counters, as
// /proc/net/netstat and /proc/net/snmp name them: "TcpExt:TCPSynRetrans"
// (SYNs sent again), "Tcp:RetransSegs". It fails the test if it cannot
// read it, so it must be called from the test's goroutine.
func (l *Lab) ClientStat(name string) uint64 {
	l.t.Helper()
	group, field, ok := strings.Cut(name, ":")
	if !ok {
		l.t.Fatalf("netlab: counter %q is not GROUP:FIELD", name)
	}
	var v uint64
	found := false
	err := l.run(client, func() error {
		for _, file := range []string{"netstat", "snmp"} {
			// thread-self: /proc/self/net is the namespace of the
			// process's main thread, not of this one.
			b, err := os.ReadFile("/proc/thread-self/net/" + file)
			if err != nil {
				return fmt.Errorf("netlab: %w", err)
			}
			lines := strings.Split(string(b), "\n")
			for i := 0; i+1 < len(lines); i += 2 {
				names, values := strings.Fields(lines[i]), strings.Fields(lines[i+1])
				if len(names) == 0 || names[0] != group+":" || len(values) != len(names) {
					continue
				}
				for j, n := range names {
					if n == field {
						v, err = strconv.ParseUint(values[j], 10, 64)
						found = err == nil
						return err
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("netlab: reading %s: %v", name, err)
	}
	if !found {
		l.t.Fatalf("netlab: no counter %s", name)
	}
	return v
}

// run runs fn on a new goroutine locked to a thread that has joined the
// namespace of r. The thread is back in its own namespace before run
// returns; if it cannot go back, the goroutine exits locked, so the runtime
// ends the thread rather than reuse it in the wrong namespace.
func (l *Lab) run(r role, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread's own namespace, to go back to whatever fn does: a
		// locked thread that ends locked is terminated, but the main
		// thread cannot be, and would stay in the lab's namespace for the
		// rest of the process.
		orig, oerr := os.Open("/proc/thread-self/ns/net")
		var res result
		entered := false
		returned := false
		// The result is sent only once the thread is back, so that no
		// thread of the process is in the lab's namespace after run
		// returns.
		defer func() {
			if !returned {
				if v := recover(); v != nil {
					res = result{panicked: true, value: v}
				} else {
					res = result{err: errors.New("netlab: fn did not return (runtime.Goexit, t.FailNow?)")}
				}
			}
			if !entered || unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
				runtime.UnlockOSThread()
			}
			if orig != nil {
				orig.Close()
			}
			done <- res
		}()
		switch {
		case oerr != nil:
			res.err = fmt.Errorf("netlab: %w", oerr)
		default:
			if err := unix.Setns(int(l.ns[r].Fd()), unix.CLONE_NEWNET); err != nil {
				res.err = fmt.Errorf("netlab: entering namespace %s: %w", l.names[r], os.NewSyscallError("setns", err))
				break
			}
			entered = true
			res.err = fn()
		}
		returned = true
	}()
	res := <-done
	if res.panicked {
		panic(res.value)
	}
	return res.err
}

// ctnetlink's message to delete conntrack entries
// (include/uapi/linux/netfilter/nfnetlink_conntrack.h: IPCTNL_MSG_CT_DELETE);
// without attributes it deletes every entry of the family.
const ipctnlMsgCtDelete = 2

// flushConntrack deletes every IPv4 conntrack entry of the calling thread's
// network namespace, as `conntrack -F` does.
func flushConntrack() error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netlab: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	const size = unix.SizeofNlMsghdr + 4 // nlmsghdr, nfgenmsg
	msg := make([]byte, size)
	binary.NativeEndian.PutUint32(msg[0:], size)
	binary.NativeEndian.PutUint16(msg[4:], unix.NFNL_SUBSYS_CTNETLINK<<8|ipctnlMsgCtDelete)
	binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(msg[8:], 1) // sequence number
	msg[16] = unix.AF_INET                    // nfgen_family
	msg[17] = unix.NFNETLINK_V0               // version; res_id stays 0
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlab: flushing conntrack: %w", os.NewSyscallError("sendto", err))
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("netlab: flushing conntrack: %w", os.NewSyscallError("recvfrom", err))
	}
	// The answer is one nlmsghdr of type NLMSG_ERROR followed by the
	// error code, negative errno or 0 for success.
	if n < unix.SizeofNlMsghdr+4 || binary.NativeEndian.Uint16(buf[4:]) != unix.NLMSG_ERROR {
		return fmt.Errorf("netlab: flushing conntrack: unexpected answer % x", buf[:n])
	}
	if e := int32(binary.NativeEndian.Uint32(buf[unix.SizeofNlMsghdr:])); e != 0 {
		return fmt.Errorf("netlab: flushing conntrack: %w", unix.Errno(-e))
	}
	return nil
}

// command runs a command and returns its combined output.
func command(name string, args ...string) ([]byte, error) {
	return commandStdin(nil, name, args...)
}

// commandStdin runs a command with stdin as its standard input and returns
// its combined output.
func commandStdin(stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd.CombinedOutput()
}
