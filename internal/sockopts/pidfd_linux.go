package sockopts

import (
	"os"

	"golang.org/x/sys/unix"
)

// ReadFrom reads the options of descriptor fd of process pid, on a
// duplicate made with pidfd_getfd (Linux 5.6), which it closes: the
// duplicate is the same socket.
func ReadFrom(pid, fd int) (Values, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return Values{}, os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	d, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return Values{}, os.NewSyscallError("pidfd_getfd", err)
	}
	f := os.NewFile(uintptr(d), "dup")
	defer f.Close()
	return Read(f)
}
