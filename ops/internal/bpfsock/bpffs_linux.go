package bpfsock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where bpffs is mounted by convention, and where Root
// mounts it when it is not.
const DefaultRoot = "/sys/fs/bpf"

// ProjectDir is the name of the project's directory in bpffs.
const ProjectDir = "keepalive"

// ErrNoBPFFS is returned by [Root] when asked not to mount bpffs and none
// is mounted at the default place.
var ErrNoBPFFS = errors.New("bpffs is not mounted at " + DefaultRoot)

// Root returns the bpffs directory to use: root if it is given (it must be
// a bpf filesystem), else DefaultRoot, which it mounts there first when
// mount is true and nothing is mounted there. Its errors start with the
// directory, for the caller to put its own name before.
func Root(root string, mount bool) (string, error) {
	given := root != ""
	if !given {
		root = DefaultRoot
	}
	var st unix.Statfs_t
	err := unix.Statfs(root, &st)
	switch {
	case err != nil && given:
		return "", fmt.Errorf("bpffs directory %s: %w", root, os.NewSyscallError("statfs", err))
	case err == nil && st.Type == unix.BPF_FS_MAGIC:
		return root, nil
	case given:
		return "", fmt.Errorf("bpffs directory %s is not a bpf filesystem (mount -t bpf bpffs %s)", root, root)
	case !mount:
		return "", ErrNoBPFFS
	}
	if err != nil {
		return "", fmt.Errorf("bpffs directory %s: %w (this kernel has no sysfs directory for bpffs; give a bpffs directory)", root, os.NewSyscallError("statfs", err))
	}
	if err := unix.Mount("bpffs", root, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("mounting bpffs at %s: %w", root, os.NewSyscallError("mount", err))
	}
	return root, nil
}

// Dir is the project's directory in a bpffs: one directory per policy,
// named for its cgroup's id (cgroup-ID, see [PolicyPins]), and the maps
// the policies share:
//
//	keepalive/socks             the socket storage map of Records (Shared.Sockets)
//	keepalive/pols              the policies in force (Shared.Policies)
//	keepalive/cgroup-ID/sock_ops    link of the sock_ops program
//	keepalive/cgroup-ID/setsockopt  link of the setsockopt program
//	keepalive/cgroup-ID/info        the policy's description (a frozen map)
//	keepalive/cgroup-ID/counts      the policy's counters
type Dir string

// ProjectIn returns the project's directory in the bpffs mounted at root.
func ProjectIn(root string) Dir { return Dir(filepath.Join(root, ProjectDir)) }

func (d Dir) socketsPin() string  { return filepath.Join(string(d), "socks") }
func (d Dir) policiesPin() string { return filepath.Join(string(d), "pols") }

// lockPoll is how often Lock tries again for a lock another process holds.
const lockPoll = 5 * time.Millisecond

// Lock locks the directory, exclusively or shared, until the returned
// function is called: a change of the policies takes it exclusively, a
// reader shared. With create, it makes the directory if it is missing;
// without, it returns an error wrapping os.ErrNotExist then. It waits for
// the lock until ctx is done.
//
// A change that removes the last policy removes the directory too, while
// holding the lock: a process that was waiting then holds the lock of a
// directory that no longer exists, and Lock starts again.
func (d Dir) Lock(ctx context.Context, exclusive, create bool) (unlock func(), err error) {
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		if create {
			if err := os.Mkdir(string(d), 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("bpfsock: %w", err)
			}
		}
		fd, err := unix.Open(string(d), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("bpfsock: %w", &os.PathError{Op: "open", Path: string(d), Err: err})
		}
		for {
			err = unix.Flock(fd, how|unix.LOCK_NB)
			if !errors.Is(err, unix.EWOULDBLOCK) {
				break
			}
			select {
			case <-ctx.Done():
				unix.Close(fd)
				return nil, ctx.Err()
			case <-time.After(lockPoll):
			}
		}
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("bpfsock: locking %s: %w", d, os.NewSyscallError("flock", err))
		}
		var held, now unix.Stat_t
		if unix.Fstat(fd, &held) == nil && unix.Stat(string(d), &now) == nil && held.Ino == now.Ino && held.Dev == now.Dev {
			return func() { unix.Close(fd) }, nil
		}
		unix.Close(fd)
		if !create {
			return nil, fmt.Errorf("bpfsock: %s: %w", d, os.ErrNotExist)
		}
	}
}

// removeIfEmpty removes the directory when no policy is left in it.
func (d Dir) removeIfEmpty() error {
	err := os.Remove(string(d))
	if errors.Is(err, unix.ENOTEMPTY) || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}
