package bpfsock

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// Objects are the project's BPF objects loaded in the kernel: the
// programs and maps whose names start with keepalive_, and the links of
// those programs; either those of the policies or those of the readers
// (see [ListObjects]).
type Objects struct {
	Programs []ebpf.ProgramID
	Maps     []ebpf.MapID
	Links    []link.ID
}

// Len is how many objects there are.
func (o Objects) Len() int { return len(o.Programs) + len(o.Maps) + len(o.Links) }

func (o Objects) String() string {
	return fmt.Sprintf("%d programs %v, %d maps %v, %d links %v", len(o.Programs), o.Programs, len(o.Maps), o.Maps, len(o.Links), o.Links)
}

// ListObjects walks the kernel's programs, maps and links by id, as
// bpftool prog show, map show and link show do, and returns the project's
// policies': every object named keepalive_ but those of the readers, which
// an audit or an apply loads for the time it runs and closes before it
// returns ([ListReaderObjects]). A host with no policy has none. It needs
// CAP_SYS_ADMIN.
func ListObjects() (Objects, error) {
	return listObjects(func(name string) bool { return !readerNames[name] })
}

// readerNames are the names of the readers' objects: the dump and set
// iterators and the selection map.
var readerNames = map[string]bool{dumpName: true, setName: true, selName: true}

// ListReaderObjects is [ListObjects] for the readers' objects: the dump
// and set iterators, their links and the selection maps, loaded while an
// audit or an apply runs, by any process.
func ListReaderObjects() (Objects, error) {
	return listObjects(func(name string) bool { return readerNames[name] })
}

// listObjects lists the objects named keepalive_ for which ours is true,
// and the links of those programs.
func listObjects(match func(name string) bool) (Objects, error) {
	var o Objects
	ours := map[ebpf.ProgramID]bool{}
	for id := ebpf.ProgramID(0); ; {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return o, fmt.Errorf("bpfsock: listing programs: %w", err)
		}
		id = next
		p, err := ebpf.NewProgramFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue // unloaded meanwhile
		}
		if err != nil {
			return o, fmt.Errorf("bpfsock: program %d: %w", id, err)
		}
		info, err := p.Info()
		p.Close()
		if err != nil {
			return o, fmt.Errorf("bpfsock: program %d: %w", id, err)
		}
		if strings.HasPrefix(info.Name, prefix) && match(info.Name) {
			o.Programs = append(o.Programs, id)
			ours[id] = true
		}
	}
	for id := ebpf.MapID(0); ; {
		next, err := ebpf.MapGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if err != nil {
			return o, fmt.Errorf("bpfsock: listing maps: %w", err)
		}
		id = next
		m, err := ebpf.NewMapFromID(id)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return o, fmt.Errorf("bpfsock: map %d: %w", id, err)
		}
		info, err := m.Info()
		m.Close()
		if err != nil {
			return o, fmt.Errorf("bpfsock: map %d: %w", id, err)
		}
		if strings.HasPrefix(info.Name, prefix) && match(info.Name) {
			o.Maps = append(o.Maps, id)
		}
	}
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil {
			return o, fmt.Errorf("bpfsock: link %d: %w", it.ID, err)
		}
		if ours[info.Program] {
			o.Links = append(o.Links, it.ID)
		}
	}
	if err := it.Err(); err != nil {
		return o, fmt.Errorf("bpfsock: listing links: %w", err)
	}
	return o, nil
}
