package wine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

//go:embed bcryptprimitives/bcryptprimitives.c
var prngSource []byte

// layout is part of the prefix's cache key: change it when the way the
// prefix is made changes, so that prefixes made the old way are rebuilt.
const layout = "1"

// Timeouts. A first start of Wine in a new prefix takes about 8 s here.
const (
	bootTimeout  = 3 * time.Minute
	buildTimeout = 5 * time.Minute
	// holdTimeout bounds the wait for the next line of a Windows program.
	holdTimeout = 2 * time.Minute
	// drainTimeout bounds the reading of a program's output after it has
	// exited.
	drainTimeout = 5 * time.Second
)

// Env is a Wine prefix ready to run windows/amd64 Go programs.
type Env struct {
	Wine   string // the wine64 loader, or the Debian wrapper that runs it
	Server string // the wineserver program; empty when not found
	Prefix string // the WINEPREFIX folder
}

// Setup returns a Wine prefix ready to run windows/amd64 Go programs. It
// finds wine (wine64 on PATH, the wine64 binary of the Debian wine64
// package, or the wine wrapper), builds bcryptprimitives.dll with
// x86_64-w64-mingw32-gcc, and makes the prefix in the user's cache folder,
// or reuses the one made by an earlier run with the same Wine. A prefix
// whose making did not finish is made anew. The test is skipped with the
// reason when Wine or the compiler is missing, and fails instead when the
// environment variable CI is set.
func Setup(t testing.TB) *Env {
	t.Helper()
	wine := findWine()
	if wine == "" {
		skip(t, "wine is not installed (Debian packages wine and wine64)")
	}
	cc, err := exec.LookPath("x86_64-w64-mingw32-gcc")
	if err != nil {
		skip(t, "x86_64-w64-mingw32-gcc is not installed (Debian package gcc-mingw-w64-x86-64)")
	}
	version, err := exec.Command(wine, "--version").Output()
	if err != nil {
		t.Fatalf("wine: %s --version: %v", wine, err)
	}
	e := &Env{Wine: wine, Server: findServer(wine)}

	dll := buildDLL(t, cc)

	root, err := os.UserCacheDir()
	if err != nil {
		root = os.TempDir()
	}
	root = filepath.Join(root, "keepalive-wine")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatalf("wine: %v", err)
	}
	sum := sha256.Sum256([]byte(layout + "\n" + strings.TrimSpace(string(version))))
	name := "prefix-" + hex.EncodeToString(sum[:6])
	e.Prefix = filepath.Join(root, name)

	// Tests in other packages run at the same time and share the prefix:
	// one makes it, the others wait.
	unlock := lock(t, filepath.Join(root, "lock"))
	defer unlock()
	if !e.ready() {
		t.Logf("wine: making the prefix %s (%s)", e.Prefix, strings.TrimSpace(string(version)))
		start := time.Now()
		e.boot(t)
		t.Logf("wine: prefix made in %v", time.Since(start).Round(100*time.Millisecond))
		removeOthers(t, root, name)
	}
	e.installDLL(t, dll)
	return e
}

// readyFile, in the prefix, is written once the prefix is complete.
const readyFile = ".keepalive-ready"

// ready reports whether the prefix was made completely by an earlier run.
func (e *Env) ready() bool {
	for _, p := range []string{
		readyFile,
		"system.reg",
		"drive_c/windows/system32/kernel32.dll",
		"drive_c/windows/system32/ws2_32.dll",
	} {
		if _, err := os.Stat(filepath.Join(e.Prefix, p)); err != nil {
			return false
		}
	}
	return true
}

// boot makes the prefix anew with wineboot and waits until Wine has
// written it to disk.
func (e *Env) boot(t testing.TB) {
	t.Helper()
	if err := os.RemoveAll(e.Prefix); err != nil {
		t.Fatalf("wine: removing the unfinished prefix: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bootTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Wine, "wineboot", "--init")
	cmd.Env = e.Environ()
	// wineserver and Wine's services inherit the output pipe and keep it
	// open for a few seconds after wineboot exits.
	cmd.WaitDelay = time.Minute
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wine: wineboot --init: %v\n%s", err, out)
	}
	// wineboot returns while wineserver still runs; the registry reaches
	// system.reg when it exits.
	e.waitServer(t, ctx)
	if err := os.WriteFile(filepath.Join(e.Prefix, readyFile), nil, 0o644); err != nil {
		t.Fatalf("wine: %v", err)
	}
}

// waitServer waits until the prefix's wineserver has exited.
func (e *Env) waitServer(t testing.TB, ctx context.Context) {
	t.Helper()
	if e.Server == "" {
		return
	}
	cmd := exec.CommandContext(ctx, e.Server, "--wait")
	cmd.Env = e.Environ()
	cmd.WaitDelay = time.Minute
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wine: wineserver --wait: %v\n%s", err, out)
	}
}

// installDLL puts dll into the prefix's system32 folder unless the one
// there was built from the same source.
func (e *Env) installDLL(t testing.TB, dll string) {
	t.Helper()
	sum := sha256.Sum256(prngSource)
	stamp := filepath.Join(e.Prefix, ".keepalive-bcryptprimitives")
	dst := filepath.Join(e.Prefix, "drive_c/windows/system32/bcryptprimitives.dll")
	if old, err := os.ReadFile(stamp); err == nil && bytes.Equal(old, sum[:]) {
		if _, err := os.Stat(dst); err == nil {
			return
		}
	}
	b, err := os.ReadFile(dll)
	if err != nil {
		t.Fatalf("wine: %v", err)
	}
	// A running program may have the old DLL mapped: replace, don't
	// overwrite.
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatalf("wine: %v", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatalf("wine: %v", err)
	}
	if err := os.WriteFile(stamp, sum[:], 0o644); err != nil {
		t.Fatalf("wine: %v", err)
	}
}

// Environ returns the environment of a Wine process in the prefix: the
// test's own, with WINEPREFIX set, Wine's debug output off, no display
// (the programs are console programs), and the Mono and Gecko installers,
// which cannot download anything here, off.
func (e *Env) Environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		switch k, _, _ := strings.Cut(kv, "="); k {
		case "WINEPREFIX", "WINEDEBUG", "WINEDLLOVERRIDES", "DISPLAY", "WAYLAND_DISPLAY", HoldEnv:
		default:
			env = append(env, kv)
		}
	}
	return append(env,
		"WINEPREFIX="+e.Prefix,
		"WINEDEBUG=-all",
		"WINEDLLOVERRIDES=mscoree,mshtml,winemenubuilder.exe=",
	)
}

// BuildTest cross-compiles the tests of the Go package in dir for
// windows/amd64 (go test -c) and returns the path of the executable, in a
// folder removed at cleanup.
func (e *Env) BuildTest(t testing.TB, dir string) string {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("wine: %v", err)
	}
	exe := filepath.Join(t.TempDir(), filepath.Base(abs)+".test.exe")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=windows", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wine: GOOS=windows go test -c in %s: %v\n%s", dir, err, out)
	}
	return exe
}

// Run runs exe with args under Wine in the folder dir ("" for the test's
// own) and returns its standard output and error, interleaved, and its
// exit code. It fails the test only when the program cannot be run.
func (e *Env) Run(t testing.TB, dir, exe string, args ...string) (output string, exitCode int) {
	t.Helper()
	p := e.Start(t, dir, exe, args...)
	if h, ok := p.Next(t); ok {
		t.Fatalf("wine: %s holds a socket (%s); use Start and Next", filepath.Base(exe), h)
	}
	return p.Wait(t)
}

// Start starts exe with args under Wine in the folder dir ("" for the
// test's own), with [HoldEnv] set, so that [Hold] in the program waits for
// the test. The program is killed at cleanup if it still runs.
func (e *Env) Start(t testing.TB, dir, exe string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(e.Wine, append([]string{exe}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(e.Environ(), HoldEnv+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatalf("wine: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("wine: %v", err)
	}
	cmd.Stdout = w
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("wine: starting %s: %v", exe, err)
	}
	w.Close()
	p := &Process{env: e, cmd: cmd, stdin: stdin, out: r, lines: make(chan string, 64), done: make(chan struct{})}
	go p.read()
	go func() {
		p.wait()
		p.drain()
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
		}
		p.wait()
		for range p.lines {
			// Let read end when the test stopped reading early.
		}
	})
	return p
}

// Process is a Windows program running under Wine.
type Process struct {
	env   *Env
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *os.File    // the read end of the program's standard output and error
	lines chan string // the program's output, line by line; closed at its end

	mu     sync.Mutex
	output strings.Builder // every line read so far

	done     chan struct{} // closed when the program has exited
	waitOnce sync.Once
	code     int
	waitErr  error
}

// Pid returns the Linux process id of the Windows program: Wine runs the
// program in the process it was started as.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// read copies the program's output into lines, until the pipe is closed
// or its read deadline passes.
func (p *Process) read() {
	defer p.out.Close()
	defer close(p.lines)
	s := bufio.NewScanner(p.out)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	for s.Scan() {
		line := strings.TrimRight(s.Text(), "\r")
		p.mu.Lock()
		p.output.WriteString(line)
		p.output.WriteByte('\n')
		p.mu.Unlock()
		p.lines <- line
	}
}

// Output returns what the program has printed so far.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// HoldInfo is a socket that the Windows program holds open with [Hold].
type HoldInfo struct {
	Tag    string
	Local  netip.AddrPort
	Remote netip.AddrPort // the zero AddrPort for a listening socket
}

func (h HoldInfo) String() string {
	return fmt.Sprintf("%s: %s -> %s", h.Tag, h.Local, h.Remote)
}

// Next reads the program's output up to its next [Hold] and returns it;
// ok is false when the program ended its output without one. The program
// waits until [Process.Release]. Next fails the test when the program
// prints nothing for two minutes.
func (p *Process) Next(t testing.TB) (h HoldInfo, ok bool) {
	t.Helper()
	for {
		select {
		case line, open := <-p.lines:
			if !open {
				return HoldInfo{}, false
			}
			rest, found := strings.CutPrefix(line, holdPrefix)
			if !found {
				continue
			}
			h, err := parseHold(rest)
			if err != nil {
				t.Fatalf("wine: %v", err)
			}
			return h, true
		case <-time.After(holdTimeout):
			t.Fatalf("wine: the program printed nothing for %v; output so far:\n%s", holdTimeout, p.Output())
		}
	}
}

// parseHold parses what [Hold] prints after holdPrefix.
func parseHold(s string) (HoldInfo, error) {
	local, s, _ := strings.Cut(s, " ")
	remote, tag, _ := strings.Cut(s, " ")
	var h HoldInfo
	var err error
	h.Tag = tag
	if h.Local, err = netip.ParseAddrPort(local); err != nil {
		return h, fmt.Errorf("hold line: local address: %w", err)
	}
	if remote != "-" {
		if h.Remote, err = netip.ParseAddrPort(remote); err != nil {
			return h, fmt.Errorf("hold line: remote address: %w", err)
		}
	}
	return h, nil
}

// Release lets the program go on from its current [Hold].
func (p *Process) Release(t testing.TB) {
	t.Helper()
	if _, err := io.WriteString(p.stdin, "\n"); err != nil {
		t.Fatalf("wine: releasing the program: %v", err)
	}
}

// EachHold calls fn for each [Hold] of the program and releases it after
// fn returns, until the program ends; then it returns the program's output
// and exit code, as [Process.Wait] does.
func (p *Process) EachHold(t testing.TB, fn func(HoldInfo)) (output string, exitCode int) {
	t.Helper()
	for {
		h, ok := p.Next(t)
		if !ok {
			return p.Wait(t)
		}
		fn(h)
		p.Release(t)
	}
}

// Wait waits for the program to end and returns everything it printed and
// its exit code. It fails the test only when the program could not be
// waited for.
func (p *Process) Wait(t testing.TB) (output string, exitCode int) {
	t.Helper()
	p.stdin.Close()
	for range p.lines {
		// The lines are in p.output already.
	}
	if err := p.wait(); err != nil {
		t.Fatalf("wine: %v", err)
	}
	return p.Output(), p.code
}

// drain ends read once it has read what the exited program wrote. Wine's
// background processes (wineserver, services.exe, winedevice.exe), when
// the program started them, inherit its standard error and keep the pipe
// open for about a second after it exits, so the end of the pipe does not
// tell.
func (p *Process) drain() {
	rc, err := p.out.SyscallConn()
	for deadline := time.Now().Add(drainTimeout); err == nil && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		n := 0
		var ierr error
		if err = rc.Control(func(fd uintptr) { n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) }); err == nil && (ierr != nil || n == 0) {
			break
		}
	}
	// Lines already read still reach p.lines; the next read fails.
	p.out.SetReadDeadline(time.Now())
}

func (p *Process) wait() error {
	p.waitOnce.Do(func() {
		err := p.cmd.Wait()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			p.code = ee.ExitCode()
		case err != nil:
			p.waitErr = err
		}
		close(p.done)
	})
	return p.waitErr
}

// Socket reads what the kernel holds for the TCP socket from local to
// remote (a zero remote: the socket listening on local) of the Windows
// program, through a duplicate of the descriptor held by the program or,
// when the program never needed the descriptor itself, by the prefix's
// wineserver.
func (p *Process) Socket(t testing.TB, local, remote netip.AddrPort) Values {
	t.Helper()
	v, err := ReadSocket(p.Pid(), local, remote)
	if errors.Is(err, ErrNotHeld) {
		if pid := p.env.serverPid(); pid != 0 {
			v, err = ReadSocket(pid, local, remote)
		}
	}
	if err != nil {
		t.Fatalf("wine: reading %s -> %s: %v", local, remote, err)
	}
	return v
}

// serverPid returns the process id of the prefix's wineserver, 0 when none
// runs. A wineserver works in a folder named after the device and inode of
// its prefix.
func (e *Env) serverPid() int {
	var st unix.Stat_t
	if err := unix.Stat(e.Prefix, &st); err != nil {
		return 0
	}
	suffix := fmt.Sprintf("/server-%x-%x", st.Dev, st.Ino)
	procs, _ := os.ReadDir("/proc")
	for _, d := range procs {
		pid := 0
		if _, err := fmt.Sscan(d.Name(), &pid); err != nil || pid <= 0 {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if !strings.HasPrefix(filepath.Base(exe), "wineserver") {
			continue
		}
		if cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); strings.HasSuffix(cwd, suffix) {
			return pid
		}
	}
	return 0
}

// findWine returns the program that starts Wine, or "" when there is none.
func findWine() string {
	if p, err := exec.LookPath("wine64"); err == nil {
		return p
	}
	// Debian's wine64 package installs wine64 off PATH.
	if out, err := exec.Command("dpkg", "-L", "wine64").Output(); err == nil {
		for _, p := range strings.Fields(string(out)) {
			if filepath.Base(p) == "wine64" && executable(p) {
				return p
			}
		}
	}
	if p, err := exec.LookPath("wine"); err == nil {
		return p
	}
	return ""
}

// findServer returns the wineserver that goes with wine, or "".
func findServer(wine string) string {
	if p := os.Getenv("WINESERVER"); p != "" && executable(p) {
		return p
	}
	for _, name := range []string{"wineserver64", "wineserver"} {
		if p := filepath.Join(filepath.Dir(wine), name); executable(p) {
			return p
		}
	}
	for _, dir := range []string{"/usr/lib/wine", "/usr/lib64/wine"} {
		for _, name := range []string{"wineserver64", "wineserver"} {
			if p := filepath.Join(dir, name); executable(p) {
				return p
			}
		}
	}
	if p, err := exec.LookPath("wineserver"); err == nil {
		return p
	}
	return ""
}

func executable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// buildDLL builds bcryptprimitives.dll from prngSource with cc and returns
// its path, in a folder removed at cleanup.
func buildDLL(t testing.TB, cc string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "bcryptprimitives.c")
	dll := filepath.Join(dir, "bcryptprimitives.dll")
	if err := os.WriteFile(src, prngSource, 0o644); err != nil {
		t.Fatalf("wine: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, cc, "-shared", "-O2", "-s", "-o", dll, src, "-ladvapi32")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wine: building bcryptprimitives.dll: %v\n%s", err, out)
	}
	return dll
}

// lock takes an exclusive lock on the file at path and returns its
// release.
func lock(t testing.TB, path string) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("wine: %v", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("wine: locking %s: %v", path, err)
	}
	return func() { f.Close() }
}

// removeOthers removes the prefixes in root other than keep: those of
// another Wine version or an older layout.
func removeOthers(t testing.TB, root, keep string) {
	t.Helper()
	ents, _ := os.ReadDir(root)
	for _, d := range ents {
		if d.IsDir() && strings.HasPrefix(d.Name(), "prefix-") && d.Name() != keep {
			if err := os.RemoveAll(filepath.Join(root, d.Name())); err != nil {
				t.Logf("wine: removing the old prefix %s: %v", d.Name(), err)
			}
		}
	}
}

// skip skips the test with the reason, or fails it when the environment
// variable CI is set: in CI every test must run.
func skip(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}
