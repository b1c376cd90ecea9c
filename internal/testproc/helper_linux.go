package testproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// Opts says how to start a helper: a copy of the test binary whose
// TestMain, seeing Env, runs the helper instead of the tests.
type Opts struct {
	Env  []string
	Args []string
	Cred *syscall.Credential // nil: as this process's user

	// In, if not nil, starts the helper in place of [Spawn]: a network
	// lab's Client starts it in the lab's client namespace, which all its
	// threads inherit. It then has no parent-death signal, which would
	// fire as soon as the lab's thread ends; cleanup still stops it.
	In func(start func() error) error

	// Stderr is where the helper's standard error goes; nil means this
	// process's.
	Stderr io.Writer

	// Cgroup, if not empty, is the cgroup v2 directory the helper starts
	// in (clone3 with CLONE_INTO_CGROUP), so that every socket it makes
	// is the cgroup's.
	Cgroup string

	// Cloneflags are added to the helper's clone flags, such as
	// CLONE_NEWNET for a network namespace of its own.
	Cloneflags uintptr
}

// Helper is a running helper process.
type Helper struct {
	Cmd    *exec.Cmd
	Stdin  io.WriteCloser
	Stdout *bufio.Reader
}

// Start starts the test binary as a helper, and stops it at cleanup: its
// standard input is closed, which ends a hold helper, and it is sent
// SIGTERM, which ends one that runs a command; it is killed if it has not
// ended 30 s later. Start returns errors rather than failing the test, so
// it may run on any goroutine.
func Start(t testing.TB, o Opts) (*Helper, error) {
	bin, err := Binary(o.Cred != nil)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, o.Args...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stderr = os.Stderr
	if o.Stderr != nil {
		cmd.Stderr = o.Stderr
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: o.Cred, Cloneflags: o.Cloneflags}
	if o.Cgroup != "" {
		fd, err := unix.Open(o.Cgroup, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("the helper's cgroup: %w", &os.PathError{Op: "open", Path: o.Cgroup, Err: err})
		}
		defer unix.Close(fd)
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, fd
	}
	start := Spawn
	if o.In != nil {
		cmd.SysProcAttr.Pdeathsig = 0
		start = o.In
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := start(cmd.Start); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return &Helper{Cmd: cmd, Stdin: stdin, Stdout: bufio.NewReader(stdout)}, nil
}

// holdEnv carries a hold helper's HoldSpec, as JSON.
const holdEnv = "KEEPALIVE_TEST_HOLD"

// Group is a number of connections whose dialed ends carry one Config.
type Group struct {
	Pairs  int
	Config string // the Config's text, or "off" for keepalive off
}

// HoldSpec says what a hold helper holds.
type HoldSpec struct {
	Name   string // the command name to take (/proc/PID/comm); empty keeps the test binary's
	Groups []Group
	// Extras also holds a UDP socket, a unix socket, a pipe's read end,
	// and the dialed end of a TCP connection in blocking mode.
	Extras bool
	// LoopbackUp brings lo up first, for a helper started in a network
	// namespace of its own (Opts.Cloneflags CLONE_NEWNET).
	LoopbackUp bool
	// Sysctls are written first, each value to its file under
	// /proc/sys (such as "net/ipv4/tcp_keepalive_probes"): the helper's
	// network namespace's own, when it has one.
	Sysctls map[string]string
}

// Holding is what a hold helper reports once everything is open.
type Holding struct {
	PID  int // the helper's pid
	Port int // its listener's port on 127.0.0.1
	// Dialed holds, for each group, the local addresses of its dialed
	// ends.
	Dialed [][]string
	// Descriptors of the extras; -1 without them.
	UDP, Unix, Pipe, Blocking int
}

// StartHold starts a helper with env, which makes its TestMain call
// [Hold], to hold what spec says, and returns it with its Holding. Like
// [Start], it may run on any goroutine.
func StartHold(t testing.TB, env []string, cred *syscall.Credential, spec HoldSpec) (*Helper, Holding, error) {
	return StartHoldWith(t, Opts{Env: env, Cred: cred}, spec)
}

// StartHoldWith is [StartHold] with the Opts to start the helper with, such
// as a cgroup or a network namespace of its own; o.Env makes its TestMain
// call [Hold].
func StartHoldWith(t testing.TB, o Opts, spec HoldSpec) (*Helper, Holding, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, Holding{}, err
	}
	o.Env = append(append([]string{}, o.Env...), holdEnv+"="+string(b))
	h, err := Start(t, o)
	if err != nil {
		return nil, Holding{}, err
	}
	var held Holding
	line, err := h.Stdout.ReadBytes('\n')
	if err != nil {
		return nil, Holding{}, fmt.Errorf("helper holding %+v exited before it was ready: %w", spec.Groups, err)
	}
	if err := json.Unmarshal(line, &held); err != nil {
		return nil, Holding{}, fmt.Errorf("helper said %q: %w", line, err)
	}
	return h, held, nil
}

// Hold is a hold helper's body, which TestMain runs: it opens the
// connections its HoldSpec asks for to a listener of its own on loopback,
// prints a Holding as JSON, and holds everything open until its standard
// input closes, doing meanwhile what [Helper.Reuse] asks. The dialed ends
// of each group carry the group's Config; the accepted ends have keepalive
// off. It returns the exit status.
func Hold() int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "hold:", err)
		return 1
	}
	var spec HoldSpec
	if err := json.Unmarshal([]byte(os.Getenv(holdEnv)), &spec); err != nil {
		return fail(fmt.Errorf("%s: %w", holdEnv, err))
	}
	if spec.LoopbackUp {
		if err := LoopbackUp(); err != nil {
			return fail(fmt.Errorf("bringing lo up: %w", err))
		}
	}
	for name, v := range spec.Sysctls {
		if err := os.WriteFile("/proc/sys/"+name, []byte(v), 0); err != nil {
			return fail(err)
		}
	}
	if spec.Name != "" {
		// /proc/self is the thread group leader, whose name is the
		// process's command.
		if err := os.WriteFile("/proc/self/comm", []byte(spec.Name), 0); err != nil {
			return fail(err)
		}
	}
	n := 0
	for _, g := range spec.Groups {
		n += g.Pairs
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
	h := Holding{PID: os.Getpid(), Port: ln.Addr().(*net.TCPAddr).Port, UDP: -1, Unix: -1, Pipe: -1, Blocking: -1}
	var dialed []net.Conn
	for _, g := range spec.Groups {
		dial := (&net.Dialer{KeepAlive: -1}).DialContext
		if g.Config != "off" {
			c, err := keepalive.ParseConfig(g.Config)
			if err != nil {
				return fail(err)
			}
			dial = (&keepalive.Dialer{Config: c}).DialContext
		}
		var group []string
		for range g.Pairs {
			c, err := dial(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				return fail(err)
			}
			dialed = append(dialed, c)
			group = append(group, c.LocalAddr().String())
		}
		h.Dialed = append(h.Dialed, group)
	}
	if err := <-accepted; err != nil {
		return fail(err)
	}
	if spec.Extras {
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
	// Requests to reuse a descriptor, until standard input closes.
	in, out := json.NewDecoder(os.Stdin), json.NewEncoder(os.Stdout)
	for {
		var req reuseRequest
		if err := in.Decode(&req); err != nil {
			break
		}
		r, held := reuse(ln, req)
		keep = append(keep, held...)
		out.Encode(r)
	}
	io.Copy(io.Discard, os.Stdin)
	runtime.KeepAlive(keep)
	runtime.KeepAlive(dialed)
	runtime.KeepAlive(ln)
	return 0
}

// reuseRequest asks a hold helper to reuse descriptor FD for the dialed
// end of a new connection whose keepalive is Config (text).
type reuseRequest struct {
	FD     int
	Config string
}

// Reused is what a hold helper did for [Helper.Reuse].
type Reused struct {
	Inode uint64 // the new socket's, now at the descriptor
	Local string // its local address
	Err   string // why it could not, if it could not
}

// Reuse asks the hold helper h to close its descriptor fd and open another
// socket on the same number, as a process that closes a connection and
// opens another may: the dialed end of a new connection to its listener,
// whose keepalive is config (text). The number is replaced atomically
// (dup3), so nothing else can take it in between. It returns once that is
// done. The helper's old connection object still names fd; the helper
// never uses it again.
func (h *Helper) Reuse(fd int, config string) (Reused, error) {
	if err := json.NewEncoder(h.Stdin).Encode(reuseRequest{fd, config}); err != nil {
		return Reused{}, err
	}
	line, err := h.Stdout.ReadBytes('\n')
	if err != nil {
		return Reused{}, fmt.Errorf("the helper did not answer: %w", err)
	}
	var r Reused
	if err := json.Unmarshal(line, &r); err != nil {
		return Reused{}, fmt.Errorf("the helper said %q: %w", line, err)
	}
	if r.Err != "" {
		return r, errors.New(r.Err)
	}
	return r, nil
}

// reuse does what req asks, and returns what must be kept open.
func reuse(ln net.Listener, req reuseRequest) (Reused, []any) {
	fail := func(err error) (Reused, []any) { return Reused{Err: err.Error()}, nil }
	c, err := keepalive.ParseConfig(req.Config)
	if err != nil {
		return fail(err)
	}
	conn, err := (&keepalive.Dialer{Config: c}).Dial("tcp", ln.Addr().String())
	if err != nil {
		return fail(err)
	}
	a, err := ln.Accept()
	if err != nil {
		return fail(err)
	}
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		return fail(err)
	}
	var st unix.Stat_t
	if cerr := rc.Control(func(fd uintptr) {
		if err = unix.Dup3(int(fd), req.FD, unix.O_CLOEXEC); err == nil {
			err = unix.Fstat(req.FD, &st)
		}
	}); cerr != nil {
		return fail(cerr)
	}
	if err != nil {
		return fail(err)
	}
	return Reused{Inode: st.Ino, Local: conn.LocalAddr().String()}, []any{conn, a}
}

// LoopbackUp brings up lo in this process's network namespace.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
