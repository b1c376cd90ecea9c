package bpfsock

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// fileidKernfs is the type of a kernfs file handle (linux/exportfs.h
// FILEID_KERNFS): a cgroup's handle is its 64-bit id.
const fileidKernfs = 0xfe

// CgroupPath returns the path of the cgroup v2 whose id is id, under the
// first cgroup v2 mount that has it, opened by its file handle
// (open_by_handle_at, which needs CAP_DAC_READ_SEARCH); ok is false when
// no cgroup has that id any more, or it cannot be opened.
func CgroupPath(id uint64) (path string, ok bool) {
	mounts, err := Cgroup2Mounts()
	if err != nil {
		return "", false
	}
	var b [8]byte
	binary.NativeEndian.PutUint64(b[:], id)
	h := unix.NewFileHandle(fileidKernfs, b[:])
	for _, m := range mounts {
		mfd, err := unix.Open(m, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		fd, err := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
		unix.Close(mfd)
		if err != nil {
			continue
		}
		path, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		unix.Close(fd)
		if err != nil {
			continue
		}
		// The link names the cgroup's directory as this process sees it.
		return path, true
	}
	return "", false
}

// Cgroup2Mounts returns where cgroup2 is mounted, from
// /proc/self/mountinfo: /sys/fs/cgroup on a unified host,
// /sys/fs/cgroup/unified on a hybrid one, none on a host with cgroup v1
// only.
func Cgroup2Mounts() ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var mounts []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
		fields := strings.Fields(sc.Text())
		for i, fl := range fields {
			if fl == "-" && i+1 < len(fields) && fields[i+1] == "cgroup2" && len(fields) > 4 {
				mounts = append(mounts, unescapeMountinfo(fields[4]))
			}
		}
	}
	return mounts, sc.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
