package enforce

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// cgroup is a cgroup v2 directory, held open.
type cgroup struct {
	path string // absolute
	id   uint64
	fd   int
}

func (c *cgroup) close() { unix.Close(c.fd) }

// openCgroup opens the cgroup v2 directory at path, and refuses anything
// else with an error that says what it is.
func openCgroup(path string) (*cgroup, error) {
	if path == "" {
		return nil, fmt.Errorf("enforce: no cgroup given: %w", ErrNotCgroup2)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("enforce: cgroup %s: %w", path, err)
	}
	fd, err := unix.Open(abs, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, fmt.Errorf("enforce: cgroup %s: no such directory: %w%s", abs, ErrNotCgroup2, cgroup2Hint())
	case errors.Is(err, unix.ENOTDIR):
		return nil, fmt.Errorf("enforce: cgroup %s is not a directory: %w%s", abs, ErrNotCgroup2, cgroup2Hint())
	case err != nil:
		return nil, fmt.Errorf("enforce: cgroup %s: %w", abs, &os.PathError{Op: "open", Path: abs, Err: err})
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("enforce: cgroup %s: %w", abs, os.NewSyscallError("fstatfs", err))
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
	case unix.CGROUP_SUPER_MAGIC:
		unix.Close(fd)
		return nil, fmt.Errorf("enforce: %s is a cgroup v1 directory: a policy goes on a cgroup v2 directory, where the kernel runs BPF programs for sockets: %w%s", abs, ErrNotCgroup2, cgroup2Hint())
	default:
		unix.Close(fd)
		return nil, fmt.Errorf("enforce: %s is not in a cgroup filesystem (its filesystem magic is %#x, cgroup2's is %#x): %w%s", abs, st.Type, unix.CGROUP2_SUPER_MAGIC, ErrNotCgroup2, cgroup2Hint())
	}
	id, err := cgroupID(abs, fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &cgroup{path: abs, id: id, fd: fd}, nil
}

// cgroupID returns the id of the cgroup at path, open as fd: the kernfs
// node id that BPF programs see, which name_to_handle_at gives as the
// file handle.
func cgroupID(path string, fd int) (uint64, error) {
	h, _, err := unix.NameToHandleAt(fd, "", unix.AT_EMPTY_PATH)
	if err == nil && len(h.Bytes()) == 8 {
		return binary.NativeEndian.Uint64(h.Bytes()), nil
	}
	// Without file handles, the inode number is the id on 64-bit
	// kernels.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, fmt.Errorf("enforce: cgroup %s: %w", path, os.NewSyscallError("fstat", err))
	}
	return st.Ino, nil
}

// cgroup2Hint says where the cgroup v2 hierarchy is mounted, or that none
// is, as the end of an error message.
func cgroup2Hint() string {
	mounts, err := bpfsock.Cgroup2Mounts()
	switch {
	case err != nil:
		return ""
	case len(mounts) == 0:
		return " (this host has no cgroup v2 hierarchy mounted: cgroup v1 only; mount it with mount -t cgroup2 none DIR, or boot with systemd.unified_cgroup_hierarchy=1)"
	}
	return fmt.Sprintf(" (cgroup v2 is mounted at %s)", strings.Join(mounts, ", "))
}
