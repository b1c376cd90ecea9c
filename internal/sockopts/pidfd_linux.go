package sockopts

import (
	"fmt"
	"os"
	"strconv"
	"strings"

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

// SocketFDs lists the descriptors of process pid that are sockets, as
// /proc/PID/fd shows them.
func SocketFDs(pid int) ([]int, error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, e := range ents {
		link, err := os.Readlink(dir + "/" + e.Name())
		if err != nil || !strings.HasPrefix(link, "socket:") {
			continue // closed meanwhile, or not a socket
		}
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a descriptor number", dir, e.Name())
		}
		fds = append(fds, fd)
	}
	return fds, nil
}
