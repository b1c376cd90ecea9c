package bpfsock

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// Netns is a network namespace, held open.
type Netns struct {
	// Inode is the namespace's inode number, as ip netns identify and
	// /proc/PID/ns/net show it.
	Inode uint64
	// PID is a process of the cgroup in it; zero for the caller's own.
	PID int

	f *os.File
}

// Own reports whether ns is the caller's namespace.
func (ns *Netns) Own() bool { return ns.PID == 0 }

// Close closes the namespace's descriptor.
func (ns *Netns) Close() error { return ns.f.Close() }

// Namespaces returns the caller's network namespace, first, and those of
// the processes in the cgroup at cgroupPath and its descendants, once
// each. A process that ends while it looks is left out. The caller closes
// them.
func Namespaces(cgroupPath string) ([]*Netns, error) {
	var pids []int
	err := filepath.WalkDir(cgroupPath, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && path != cgroupPath {
				return nil // a child cgroup removed meanwhile
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		more, err := cgroupProcs(filepath.Join(path, "cgroup.procs"))
		if errors.Is(err, os.ErrNotExist) && path != cgroupPath {
			return nil
		}
		pids = append(pids, more...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bpfsock: finding the network namespaces of cgroup %s: %w", cgroupPath, err)
	}
	nss, err := namespacesOf(pids, false)
	if err != nil {
		return nil, fmt.Errorf("bpfsock: finding the network namespaces of cgroup %s: %w", cgroupPath, err)
	}
	return nss, nil
}

// NamespacesOf returns the caller's network namespace, first, and those
// of the processes pids, once each, in the order of the first process
// found in each. A process that ends while it looks is left out, and so
// is one whose namespace this process may not see (/proc/PID/ns/net needs
// ptrace read access to the process): its sockets cannot be found in
// /proc/PID/fd either. The caller closes them.
func NamespacesOf(pids []int) ([]*Netns, error) {
	nss, err := namespacesOf(pids, true)
	if err != nil {
		return nil, fmt.Errorf("bpfsock: finding the network namespaces of the processes: %w", err)
	}
	return nss, nil
}

// namespacesOf is NamespacesOf; with skipDenied, a process whose namespace
// may not be seen is left out rather than failing.
func namespacesOf(pids []int, skipDenied bool) ([]*Netns, error) {
	self, err := openNetns("/proc/thread-self/ns/net", 0)
	if err != nil {
		return nil, err
	}
	nss := []*Netns{self}
	seen := map[uint64]bool{self.Inode: true}
	for _, pid := range pids {
		var st unix.Stat_t
		p := fmt.Sprintf("/proc/%d/ns/net", pid)
		if err := unix.Stat(p, &st); err != nil {
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) ||
				skipDenied && (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)) {
				continue
			}
			closeAll(nss)
			return nil, fmt.Errorf("the network namespace of process %d: %w", pid, &os.PathError{Op: "stat", Path: p, Err: err})
		}
		if seen[st.Ino] {
			continue
		}
		ns, err := openNetns(p, pid)
		if errors.Is(err, os.ErrNotExist) || skipDenied && errors.Is(err, os.ErrPermission) {
			continue
		}
		if err != nil {
			closeAll(nss)
			return nil, err
		}
		seen[ns.Inode] = true
		nss = append(nss, ns)
	}
	return nss, nil
}

// closeAll closes the namespaces.
func closeAll(nss []*Netns) {
	for _, ns := range nss {
		ns.Close()
	}
}

// Do runs f in the namespace: on the calling goroutine for the caller's
// own, else on a thread of its own that has entered ns and goes back
// after ([inNetns]), which needs CAP_SYS_ADMIN. A socket f makes there,
// such as a netlink socket, stays in ns.
func (ns *Netns) Do(f func() error) error {
	if ns.Own() {
		return f()
	}
	return inNetns(ns, f)
}

// openNetns opens the namespace file p, of process pid.
func openNetns(p string, pid int) (*Netns, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("bpfsock: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("bpfsock: %w", os.NewSyscallError("fstat", err))
	}
	return &Netns{Inode: st.Ino, PID: pid, f: f}, nil
}

// cgroupProcs reads the pids in a cgroup.procs file.
func cgroupProcs(path string) ([]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var pids []int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pid, err := strconv.Atoi(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not a pid", path, sc.Text())
		}
		pids = append(pids, pid)
	}
	return pids, sc.Err()
}

// RunIter attaches the iterator program prog once and runs it in each of
// the namespaces: it opens an instance in the namespace (a TCP iterator
// walks the sockets of the namespace it is opened in, whatever the
// reader's), reads what the program writes, and gives it to each. Entering
// another namespace needs CAP_SYS_ADMIN; the caller's own needs nothing
// more. It stops at the first error, and checks ctx between namespaces.
func RunIter(ctx context.Context, prog *ebpf.Program, nss []*Netns, each func(ns *Netns, out []byte) error) error {
	return runIter(ctx, prog, nss, func(ns *Netns, r io.Reader) error {
		out, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("bpfsock: running the iterator in network namespace %d: %w", ns.Inode, err)
		}
		return each(ns, out)
	})
}

// runIter is RunIter with the program's output given as it is read.
func runIter(ctx context.Context, prog *ebpf.Program, nss []*Netns, each func(ns *Netns, r io.Reader) error) error {
	it, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return fmt.Errorf("bpfsock: attaching the iterator: %w", err)
	}
	defer it.Close()
	for _, ns := range nss {
		if err := ctx.Err(); err != nil {
			return err
		}
		var rd io.ReadCloser
		open := func() error {
			var err error
			rd, err = it.Open()
			return err
		}
		if err := ns.Do(open); err != nil {
			return fmt.Errorf("bpfsock: opening the iterator in network namespace %d: %w", ns.Inode, err)
		}
		err := each(ns, rd)
		rd.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// RunApply runs a policy's apply iterator ([Kernel.ApplyIter]) in each
// namespace and returns, per namespace, the connections it set.
func RunApply(ctx context.Context, prog *ebpf.Program, nss []*Netns) (map[*Netns][]IterRecord, error) {
	set := map[*Netns][]IterRecord{}
	err := RunIter(ctx, prog, nss, func(ns *Netns, out []byte) error {
		rs, err := parseIterRecords(out)
		set[ns] = rs
		return err
	})
	return set, err
}

// inNetns runs f on a thread of its own that has entered namespace ns,
// and takes the thread back to its namespace after. A thread that cannot
// go back is never used again.
func inNetns(ns *Netns, f func() error) error {
	done := make(chan error, 1)
	go func() {
		var err error
		// Sent once the descriptor below is closed, so that none is
		// left open when inNetns returns.
		defer func() { done <- err }()
		runtime.LockOSThread()
		self, oerr := os.Open("/proc/thread-self/ns/net")
		if oerr != nil {
			runtime.UnlockOSThread()
			err = oerr
			return
		}
		defer self.Close()
		if serr := unix.Setns(int(ns.f.Fd()), unix.CLONE_NEWNET); serr != nil {
			runtime.UnlockOSThread()
			if errors.Is(serr, unix.EPERM) {
				serr = fmt.Errorf("%w: entering another network namespace needs CAP_SYS_ADMIN", serr)
			}
			err = os.NewSyscallError("setns", serr)
			return
		}
		err = f()
		if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); serr != nil {
			// Leave the thread locked: it ends with this goroutine.
			err = errors.Join(err, os.NewSyscallError("setns back", serr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return <-done
}

func nativeUint16(b []byte) uint16 { return binary.NativeEndian.Uint16(b) }
func nativeUint32(b []byte) uint32 { return binary.NativeEndian.Uint32(b) }
func nativeUint64(b []byte) uint64 { return binary.NativeEndian.Uint64(b) }
