package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// progressEvery is how many items pass between two progress reports
// within a stage.
const progressEvery = 4096

// findOwners searches the descriptors of the processes pids for the
// sockets of conns, and sets the PID, FD and Command of each it finds.
// When pid is zero (every process), it returns the processes it could not
// search for lack of permission, when some socket is left without an
// owner (they may hold it), in pid order; when pid is not zero (pids is
// that process alone), that is an error instead. Kernel threads, which
// hold no descriptors, are not counted.
func findOwners(ctx context.Context, conns []Conn, pid int, pids []int, progress func(Progress)) (denied []*PermissionError, err error) {
	byInode := make(map[uint32]int, len(conns))
	for i := range conns {
		byInode[conns[i].Inode] = i
	}
	s := scanner{byInode: byInode, conns: conns, left: len(conns)}
	commands := map[int]string{}
	report(progress, Progress{Stage: Owners, Total: len(pids)})
	for i, p := range pids {
		if s.left == 0 {
			break
		}
		if i%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		found, err := s.scan(p)
		var perr *PermissionError
		switch {
		case errors.As(err, &perr) && pid == 0:
			if !kernelThread(p) {
				denied = append(denied, perr)
			}
		case errors.Is(err, os.ErrNotExist) && pid == 0:
			// The process ended while we looked.
		case err != nil:
			return nil, err
		}
		if found {
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p))
			commands[p] = strings.TrimSuffix(string(comm), "\n")
		}
		if i%progressEvery == progressEvery-1 {
			report(progress, Progress{Stage: Owners, Done: i + 1, Total: len(pids)})
		}
	}
	for i := range conns {
		if conns[i].PID != 0 {
			conns[i].Command = commands[conns[i].PID]
		}
	}
	report(progress, Progress{Stage: Owners, Done: len(pids), Total: len(pids)})
	if s.left == 0 {
		// Every socket has its owner: those not searched hold none of
		// them.
		denied = nil
	}
	return denied, nil
}

// pfKthread is PF_KTHREAD, the flag of a kernel thread in the flags field
// of /proc/PID/stat (include/linux/sched.h).
const pfKthread = 0x00200000

// kernelThread reports whether process pid is a kernel thread, which holds
// no descriptors: /proc/PID/stat, readable by all, says so in its flags.
func kernelThread(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) state ppid pgrp session tty_nr tpgid flags ...; comm may
	// hold spaces and parentheses, so the fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 7 {
		return false
	}
	flags, err := strconv.ParseUint(f[6], 10, 64)
	return err == nil && flags&pfKthread != 0
}

// allPIDs lists the processes in /proc, in ascending order.
func allPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if p, err := strconv.Atoi(e.Name()); err == nil && p > 0 {
			pids = append(pids, p)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// scanner finds the owners of sockets by their inodes.
type scanner struct {
	byInode map[uint32]int // index in conns
	conns   []Conn
	left    int // conns with no owner yet
	dirents [32 << 10]byte
	link    [64]byte
	names   []string
}

// scan reads /proc/PID/fd and records pid as the owner of every socket of
// s.conns it finds there that has no owner yet. found reports whether it
// found one. A descriptor whose link cannot be read is skipped; the
// process is refused only when no link can be read.
func (s *scanner) scan(pid int) (found bool, err error) {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, procError(pid, "open "+dir, err)
	}
	defer unix.Close(dfd)
	var denied error // the first refused readlink
	readable := false
	for {
		n, err := unix.Getdents(dfd, s.dirents[:])
		if err != nil {
			return found, procError(pid, "getdents "+dir, err)
		}
		if n == 0 {
			if !readable && denied != nil {
				return false, denied
			}
			return found, nil
		}
		_, _, s.names = unix.ParseDirent(s.dirents[:n], -1, s.names[:0])
		for _, name := range s.names {
			m, err := unix.Readlinkat(dfd, name, s.link[:])
			if err != nil {
				// Closed while we looked (ENOENT), or refused: a
				// process is denied only if every link is.
				if denied == nil && !errors.Is(err, unix.ENOENT) {
					denied = procError(pid, "readlink", err)
				}
				continue
			}
			readable = true
			inode, ok := socketInode(s.link[:m])
			if !ok {
				continue
			}
			i, ok := s.byInode[inode]
			if !ok || s.conns[i].PID != 0 {
				continue
			}
			fd, err := strconv.Atoi(name)
			if err != nil {
				continue
			}
			s.conns[i].PID, s.conns[i].FD = pid, fd
			s.left--
			found = true
		}
	}
}

// socketInode parses "socket:[N]", the target of a socket's link in
// /proc/PID/fd.
func socketInode(link []byte) (uint32, bool) {
	rest, ok := bytes.CutPrefix(link, []byte("socket:["))
	if !ok || len(rest) < 2 || rest[len(rest)-1] != ']' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(rest[:len(rest)-1]), 10, 32)
	return uint32(n), err == nil
}

// procError wraps an error reading /proc/PID: a *PermissionError for EACCES
// and EPERM, os.ErrNotExist for a process that has gone.
func procError(pid int, op string, err error) error {
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
		return newPermissionError(pid, op, err)
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ESRCH):
		return fmt.Errorf("audit: process %d: %w", pid, os.ErrNotExist)
	}
	return fmt.Errorf("audit: process %d: %w", pid, os.NewSyscallError(op, err))
}

// pidNamespace returns the network namespace of process pid, which the
// caller closes.
func pidNamespace(pid int) (*bpfsock.Netns, error) {
	path := fmt.Sprintf("/proc/%d/ns/net", pid)
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, procError(pid, "stat "+path, err)
	}
	nss, err := bpfsock.NamespacesOf([]int{pid})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	ns := nss[len(nss)-1] // the process's, which may be the caller's
	for _, other := range nss[:len(nss)-1] {
		other.Close()
	}
	if ns.Inode != st.Ino {
		ns.Close()
		return nil, fmt.Errorf("audit: process %d: %w", pid, os.ErrNotExist) // ended, its pid reused
	}
	return ns, nil
}
