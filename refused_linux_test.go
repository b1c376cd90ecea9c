//go:build amd64 || arm64

package keepalive_test

import (
	"errors"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// The scenario of a kernel that refuses one option halfway through Set,
// made with a seccomp filter rather than with Multipath TCP
// (TestSetAtomicMultipath). The filter reads setsockopt's level and option
// from the registers, which amd64 and arm64 pass them in; on 386 they go
// through socketcall's memory, out of a filter's reach, hence the build
// line.

// TestSetRestoresWhenRefused checks that Set applies the whole Config or
// leaves the socket as it was, on a path that does not depend on Multipath
// TCP: a seccomp filter answers setsockopt of one option with EPERM, so
// that Set writes the options before it, fails at that one, and must put
// the others back. The error wraps the errno once, in an *os.SyscallError,
// and names the option and the value refused.
func TestSetRestoresWhenRefused(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	before := keepalive.Config{Idle: 50 * time.Second, Interval: 9 * time.Second, Count: 6, UserTimeout: 12 * time.Second}
	c := keepalive.Config{Idle: 20 * time.Second, Interval: 3 * time.Second, Count: 4, UserTimeout: 30 * time.Second}
	off := c
	off.Off = true
	for _, tt := range []struct {
		name       string
		level, opt int
		c          keepalive.Config
		refused    string // the option and value in the error
	}{
		{"Count", unix.IPPROTO_TCP, unix.TCP_KEEPCNT, c, "TCP_KEEPCNT 4"},
		{"UserTimeout", unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, c, "TCP_USER_TIMEOUT 30000ms"},
		{"Off", unix.SOL_SOCKET, unix.SO_KEEPALIVE, off, "SO_KEEPALIVE off"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dialed, accepted := pair(t, ln, plainDial)
			for _, e := range ends(dialed, accepted) {
				require.NoError(t, keepalive.Set(e.conn, before), e.name)
				had := readKernel(t, e.conn)
				require.Equal(t, expect(t, before), had, e.name)

				err := onRefusingThread(t, tt.level, tt.opt, func() error { return keepalive.Set(e.conn, tt.c) })
				require.Error(t, err, e.name)
				assert.ErrorIs(t, err, syscall.EPERM, e.name)
				var se *os.SyscallError
				if assert.ErrorAs(t, err, &se, e.name) {
					assert.Equal(t, "setsockopt", se.Syscall, e.name)
				}
				assert.True(t, strings.HasPrefix(err.Error(), "keepalive: set tcp "), "%s: %q", e.name, err)
				assert.True(t, strings.HasSuffix(err.Error(), ": "+tt.refused+": setsockopt: operation not permitted"), "%s: %q", e.name, err)
				assert.Equal(t, had, readKernel(t, e.conn), "%s: every option as it was after the refused Set", e.name)

				// Without the filter the same Config applies.
				require.NoError(t, keepalive.Set(e.conn, tt.c), e.name)
				want := expect(t, tt.c)
				want.KeepAlive = !tt.c.Off
				assert.Equal(t, want, readKernel(t, e.conn), e.name)
			}
		})
	}
}

// onRefusingThread runs f on an OS thread of its own whose setsockopt of
// option opt at level fails with EPERM, and returns f's error. The thread
// runs nothing else, and ends with f: a goroutine that exits locked to its
// thread takes the thread with it, and the runtime starts new threads from
// a thread of its own, not from a locked one, so the filter reaches no
// other thread. The test's getsockopt calls, on its own goroutine, are
// never filtered. It skips the test (fails it in CI) where the filter
// cannot be installed.
func onRefusingThread(t *testing.T, level, opt int, f func() error) error {
	t.Helper()
	type result struct{ filter, err error }
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends here
		if err := refuseSetsockopt(level, opt); err != nil {
			done <- result{filter: err}
			return
		}
		done <- result{err: f()}
	}()
	r := <-done
	if errors.Is(r.filter, unix.EPERM) || errors.Is(r.filter, unix.EACCES) || errors.Is(r.filter, unix.EINVAL) {
		skipOutsideCI(t, "a seccomp filter cannot be installed here: %v", r.filter)
	}
	require.NoError(t, r.filter, "installing the seccomp filter")
	return r.err
}

// refuseSetsockopt installs, on the calling thread, a seccomp filter that
// answers setsockopt(fd, level, opt, ...) with EPERM and lets every other
// system call through.
func refuseSetsockopt(level, opt int) error {
	arch := map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}[runtime.GOARCH]
	// struct seccomp_data: int nr, __u32 arch, __u64 instruction_pointer,
	// __u64 args[6]; each argument's low 32 bits first (little-endian).
	const offNr, offArch, offArgs = 0, 4, 16
	ld := func(off uint32) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: off}
	}
	// jeq goes on when the word is k, and otherwise jumps to allow,
	// which is far instructions ahead.
	jeq := func(k uint32, far uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jf: far}
	}
	prog := []unix.SockFilter{
		ld(offArch),
		jeq(arch, 7),
		ld(offNr),
		jeq(unix.SYS_SETSOCKOPT, 5),
		ld(offArgs + 8*1), // level
		jeq(uint32(level), 3),
		ld(offArgs + 8*2), // option
		jeq(uint32(opt), 1),
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW}, // allow
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl PR_SET_NO_NEW_PRIVS", err)
	}
	err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&fprog)), 0, 0)
	runtime.KeepAlive(prog)
	return os.NewSyscallError("prctl PR_SET_SECCOMP", err)
}

// The filter itself: on the thread it is installed on, setsockopt of the
// option fails, of another option does not; and other threads are left
// alone.
func TestRefusingThread(t *testing.T) {
	ln := listen(t, &keepalive.ListenConfig{})
	dialed, _ := pair(t, ln, plainDial)
	tc := dialed.(*net.TCPConn)
	set := func(opt, v int) error {
		rc, err := tc.SyscallConn()
		require.NoError(t, err)
		var serr error
		require.NoError(t, rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, opt, v) }))
		return serr
	}
	err := onRefusingThread(t, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, func() error {
		if err := set(unix.TCP_KEEPIDLE, 33); err != nil {
			return err
		}
		return set(unix.TCP_KEEPCNT, 5)
	})
	assert.ErrorIs(t, err, unix.EPERM, "TCP_KEEPCNT on the filtered thread")
	assert.Equal(t, 33, getInt(t, tc, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE), "TCP_KEEPIDLE on the filtered thread")
	assert.NoError(t, set(unix.TCP_KEEPCNT, 5), "TCP_KEEPCNT elsewhere")
	assert.Equal(t, 5, getInt(t, tc, unix.IPPROTO_TCP, unix.TCP_KEEPCNT))
}
