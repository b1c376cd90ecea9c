package audit

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// process is a process opened with pidfd_open, whose descriptors can be
// duplicated into this one.
type process struct {
	pid   int
	pidfd int
}

// openProcess opens process pid with pidfd_open (Linux 5.3 and later).
func openProcess(pid int) (*process, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil, fmt.Errorf("audit: process %d: %w", pid, os.ErrNotExist)
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("audit: reading another process's sockets needs pidfd_open (Linux 5.3) and pidfd_getfd (Linux 5.6): %w", os.NewSyscallError("pidfd_open", err))
	case err != nil:
		return nil, fmt.Errorf("audit: process %d: %w", pid, os.NewSyscallError("pidfd_open", err))
	}
	return &process{pid: pid, pidfd: fd}, nil
}

func (p *process) close() { unix.Close(p.pidfd) }

// testHookDup, if not nil, is called as each descriptor is about to be
// duplicated, or, for the BPF iterator, as the socket behind it is about
// to be read or changed, with the process and the descriptor number: a
// test makes the process reuse the number there.
var testHookDup func(pid, fd int)

// dup duplicates the process's descriptor fd into this process with
// pidfd_getfd, and checks that it is still the socket with the given
// inode: the process may have closed fd and opened something else on it
// since /proc/PID/fd was read. The caller closes the duplicate.
func (p *process) dup(fd int, inode uint32) (int, error) {
	if testHookDup != nil {
		testHookDup(p.pid, fd)
	}
	d, err := unix.PidfdGetfd(p.pidfd, fd, 0)
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return -1, newPermissionError(p.pid, "pidfd_getfd", err)
	case errors.Is(err, unix.ESRCH):
		return -1, fmt.Errorf("audit: process %d: %w", p.pid, os.ErrNotExist)
	case errors.Is(err, unix.EBADF):
		return -1, fmt.Errorf("audit: process %d closed descriptor %d: %w", p.pid, fd, os.ErrNotExist)
	case errors.Is(err, unix.ENOSYS):
		return -1, fmt.Errorf("audit: reading another process's sockets needs pidfd_getfd (Linux 5.6): %w", os.NewSyscallError("pidfd_getfd", err))
	case err != nil:
		return -1, fmt.Errorf("audit: process %d descriptor %d: %w", p.pid, fd, os.NewSyscallError("pidfd_getfd", err))
	}
	var st unix.Stat_t
	if err := unix.Fstat(d, &st); err != nil {
		unix.Close(d)
		return -1, fmt.Errorf("audit: process %d descriptor %d: %w", p.pid, fd, os.NewSyscallError("fstat", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != uint64(inode) {
		unix.Close(d)
		return -1, fmt.Errorf("audit: process %d descriptor %d is no longer socket %d: %w", p.pid, fd, inode, os.ErrNotExist)
	}
	return d, nil
}

// fdConn is a syscall.RawConn over a descriptor this package owns, through
// which the library reads and sets it. Unlike os.NewFile it adds nothing
// to the runtime's poller, and unlike net.FileConn it never sets
// O_NONBLOCK: that flag belongs to the open file, which the duplicate
// shares with the process, and a process that reads its socket blocking
// would see its reads fail.
type fdConn int

func (c fdConn) Control(f func(fd uintptr)) error {
	f(uintptr(c))
	return nil
}

func (c fdConn) Read(func(fd uintptr) bool) error {
	return fmt.Errorf("audit: reading from a duplicated socket: %w", errors.ErrUnsupported)
}

func (c fdConn) Write(func(fd uintptr) bool) error {
	return fmt.Errorf("audit: writing to a duplicated socket: %w", errors.ErrUnsupported)
}
