package bpfsock

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// PolicyPins is where one policy is pinned: a directory of the project's,
// cgroup-ID, named for the id of the policy's cgroup.
type PolicyPins struct {
	Dir    string
	Cgroup uint64
}

const policyDirPrefix = "cgroup-"

// Policy returns the pins of the policy on the cgroup whose id is cgroup.
func (d Dir) Policy(cgroup uint64) PolicyPins {
	return PolicyPins{Dir: filepath.Join(string(d), policyDirPrefix+strconv.FormatUint(cgroup, 10)), Cgroup: cgroup}
}

// Policies lists the policies pinned in d, in the order of their cgroups'
// ids; none when d does not exist.
func (d Dir) Policies() ([]PolicyPins, error) {
	ents, err := os.ReadDir(string(d))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bpfsock: %w", err)
	}
	var pps []PolicyPins
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), policyDirPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			continue
		}
		pps = append(pps, d.Policy(id))
	}
	// os.ReadDir sorts by name; order by id instead.
	slices.SortFunc(pps, func(a, b PolicyPins) int { return cmp.Compare(a.Cgroup, b.Cgroup) })
	return pps, nil
}

func (pp PolicyPins) sockOpsPin() string    { return filepath.Join(pp.Dir, "sock_ops") }
func (pp PolicyPins) setsockoptPin() string { return filepath.Join(pp.Dir, "setsockopt") }
func (pp PolicyPins) infoPin() string       { return filepath.Join(pp.Dir, "info") }
func (pp PolicyPins) countsPin() string     { return filepath.Join(pp.Dir, "counts") }

// exists reports whether a policy is pinned at pp.
func (pp PolicyPins) exists() bool {
	_, err := os.Stat(pp.sockOpsPin())
	return err == nil
}

// Pinned is a policy as read from its pins.
type Pinned struct {
	Pins PolicyPins
	// Info is the description the policy was put in force with.
	Info []byte
	// Counts is what its programs have done so far.
	Counts Counts
	// Attached reports whether its links are still attached: a link
	// detaches itself when its cgroup is removed.
	Attached bool
	// Programs holds the ids of its sock_ops and setsockopt programs, and
	// Links those of their links.
	Programs [2]ebpf.ProgramID
	Links    [2]link.ID
}

// Read reads the policy pinned at pp.
func (pp PolicyPins) Read() (*Pinned, error) {
	p := &Pinned{Pins: pp, Attached: true}
	for i, pin := range []string{pp.sockOpsPin(), pp.setsockoptPin()} {
		// A link cannot be opened read-only.
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			return nil, fmt.Errorf("bpfsock: %s: %w", pin, err)
		}
		info, err := l.Info()
		l.Close()
		if err != nil {
			return nil, fmt.Errorf("bpfsock: %s: %w", pin, err)
		}
		p.Programs[i], p.Links[i] = info.Program, info.ID
		if cg := info.Cgroup(); cg == nil || cg.CgroupId == 0 {
			p.Attached = false
		}
	}
	info, err := ebpf.LoadPinnedMap(pp.infoPin(), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("bpfsock: %s: %w", pp.infoPin(), err)
	}
	defer info.Close()
	if p.Info, err = readInfo(info); err != nil {
		return nil, err
	}
	counts, err := ebpf.LoadPinnedMap(pp.countsPin(), &ebpf.LoadPinOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("bpfsock: %s: %w", pp.countsPin(), err)
	}
	defer counts.Close()
	if p.Counts, err = ReadCounts(counts); err != nil {
		return nil, err
	}
	return p, nil
}

// OpenShared opens the shared maps pinned in d; the error wraps
// os.ErrNotExist when no policy has pinned them.
func (d Dir) OpenShared() (*Shared, error) {
	sockets, err := ebpf.LoadPinnedMap(d.socketsPin(), nil)
	if err != nil {
		return nil, fmt.Errorf("bpfsock: %s: %w", d.socketsPin(), err)
	}
	policies, err := ebpf.LoadPinnedMap(d.policiesPin(), nil)
	if err != nil {
		sockets.Close()
		return nil, fmt.Errorf("bpfsock: %s: %w", d.policiesPin(), err)
	}
	return &Shared{Sockets: sockets, Policies: policies}, nil
}

// openOrCreateShared opens the shared maps, or creates and pins them when
// none are pinned.
func (d Dir) openOrCreateShared() (s *Shared, err error) {
	_, err1 := os.Stat(d.socketsPin())
	_, err2 := os.Stat(d.policiesPin())
	switch {
	case err1 == nil && err2 == nil:
		return d.OpenShared()
	case !errors.Is(err1, os.ErrNotExist) || !errors.Is(err2, os.ErrNotExist):
		return nil, fmt.Errorf("bpfsock: %s holds one of the shared maps and not the other: remove the policies (or the directory) and enforce again", d)
	}
	if s, err = NewShared(); err != nil {
		return nil, err
	}
	if err := s.Sockets.Pin(d.socketsPin()); err != nil {
		s.Close()
		return nil, fmt.Errorf("bpfsock: pinning %s: %w", d.socketsPin(), err)
	}
	if err := s.Policies.Pin(d.policiesPin()); err != nil {
		s.Sockets.Unpin()
		s.Close()
		return nil, fmt.Errorf("bpfsock: pinning %s: %w", d.policiesPin(), err)
	}
	return s, nil
}

// unpinSharedIfUnused unpins the shared maps when no policy is pinned.
func (d Dir) unpinSharedIfUnused() error {
	pps, err := d.Policies()
	if err != nil || len(pps) > 0 {
		return err
	}
	return errors.Join(
		ignoreNotExist(os.Remove(d.socketsPin())),
		ignoreNotExist(os.Remove(d.policiesPin())),
	)
}

func ignoreNotExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// Put puts policy p, described by info, on the cgroup open as cgroupFD,
// pinned in d, whose lock the caller holds exclusively. With no policy
// pinned for the cgroup, it attaches the sock_ops and setsockopt programs
// with two bpf_links and pins them; with one, it replaces that policy's
// programs in its links (BPF_LINK_UPDATE, atomic for each link: a
// connection meets the old program or the new, never none or both) and
// its description and counters, so that one policy stays on the cgroup.
//
// On success the programs are attached and pinned, and Put returns them:
// running the iterator is the caller's, and so is closing them. On error
// nothing is left of p: no program, map, link or pin, and a replaced
// policy is as it was.
func (k *Kernel) Put(d Dir, cgroupFD int, p *Policy, info []byte) (progs *Programs, replaced bool, err error) {
	shared, err := d.openOrCreateShared()
	if err != nil {
		return nil, false, err
	}
	defer shared.Close()
	defer func() {
		if err != nil {
			err = errors.Join(err, d.Tidy())
		}
	}()
	counts, err := newCounts()
	if err != nil {
		return nil, false, err
	}
	defer counts.Close()
	infoMap, err := newInfo(info)
	if err != nil {
		return nil, false, err
	}
	defer infoMap.Close()
	progs, err = k.LoadPrograms(p, &Maps{Shared: shared, Counts: counts})
	if err != nil {
		return nil, false, err
	}
	pp := d.Policy(p.Cgroup)
	if pp.exists() {
		err = replace(pp, shared, progs, infoMap, counts, p)
		replaced = true
	} else {
		err = attach(pp, cgroupFD, shared, progs, infoMap, counts, p)
	}
	if err != nil {
		progs.Close()
		return nil, false, err
	}
	return progs, replaced, nil
}

// attach attaches a policy to a cgroup that has none, and pins it.
func attach(pp PolicyPins, cgroupFD int, shared *Shared, progs *Programs, info, counts *ebpf.Map, p *Policy) (err error) {
	if err := os.Mkdir(pp.Dir, 0o700); err != nil {
		return fmt.Errorf("bpfsock: %w", err)
	}
	var links []link.Link
	defer func() {
		for _, l := range links {
			if err != nil {
				l.Detach()
			}
			l.Close()
		}
		if err != nil {
			os.RemoveAll(pp.Dir)
		}
	}()
	for _, a := range []struct {
		name   string
		prog   *ebpf.Program
		attach ebpf.AttachType
		pin    string
	}{
		{"sock_ops", progs.SockOps, ebpf.AttachCGroupSockOps, pp.sockOpsPin()},
		{"setsockopt", progs.Setsockopt, ebpf.AttachCGroupSetsockopt, pp.setsockoptPin()},
	} {
		l, err := link.AttachRawLink(link.RawLinkOptions{Target: cgroupFD, Program: a.prog, Attach: a.attach})
		if err != nil {
			return fmt.Errorf("bpfsock: attaching the %s program to the cgroup: %w", a.name, attachError(err))
		}
		links = append(links, l)
		if err := l.Pin(a.pin); err != nil {
			return fmt.Errorf("bpfsock: pinning %s: %w", a.pin, err)
		}
	}
	if err := info.Pin(pp.infoPin()); err != nil {
		return fmt.Errorf("bpfsock: pinning %s: %w", pp.infoPin(), err)
	}
	if err := counts.Pin(pp.countsPin()); err != nil {
		return fmt.Errorf("bpfsock: pinning %s: %w", pp.countsPin(), err)
	}
	if err := shared.Policies.Put(p.Cgroup, p.ID); err != nil {
		return fmt.Errorf("bpfsock: recording the policy in force: %w", err)
	}
	return nil
}

// attachError says what an EPERM from attaching to a cgroup means once
// the capabilities were checked: another program holds the hook alone.
func attachError(err error) error {
	if errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%w (a program attached to this cgroup or an ancestor without BPF_F_ALLOW_MULTI allows no other: bpftool cgroup tree shows them)", err)
	}
	return err
}

// replace replaces the programs of the policy pinned at pp with progs,
// and its description and counters with info and counts.
func replace(pp PolicyPins, shared *Shared, progs *Programs, info, counts *ebpf.Map, p *Policy) (err error) {
	type slot struct {
		pin  string
		prog *ebpf.Program
		l    link.Link
		old  *ebpf.Program
	}
	slots := []*slot{{pin: pp.sockOpsPin(), prog: progs.SockOps}, {pin: pp.setsockoptPin(), prog: progs.Setsockopt}}
	defer func() {
		for i := len(slots) - 1; i >= 0; i-- {
			s := slots[i]
			if err != nil && s.l != nil && s.old != nil {
				// Put the old program back: this link was updated.
				err = errors.Join(err, s.l.Update(s.old))
			}
			if s.old != nil {
				s.old.Close()
			}
			if s.l != nil {
				s.l.Close()
			}
		}
	}()
	for _, s := range slots {
		l, err := link.LoadPinnedLink(s.pin, nil)
		if err != nil {
			return fmt.Errorf("bpfsock: %s: %w", s.pin, err)
		}
		s.l = l
		li, err := l.Info()
		if err != nil {
			return fmt.Errorf("bpfsock: %s: %w", s.pin, err)
		}
		old, err := ebpf.NewProgramFromID(li.Program)
		if err != nil {
			return fmt.Errorf("bpfsock: the program of %s: %w", s.pin, err)
		}
		if err := l.Update(s.prog); err != nil {
			old.Close()
			return fmt.Errorf("bpfsock: replacing the program of %s: %w", s.pin, err)
		}
		s.old = old
	}
	if err := shared.Policies.Put(p.Cgroup, p.ID); err != nil {
		return fmt.Errorf("bpfsock: recording the policy in force: %w", err)
	}
	// Pin the new description and counters beside the old ones, then move
	// them over: rename replaces a pin in one step.
	for _, m := range []struct {
		m   *ebpf.Map
		pin string
	}{{info, pp.infoPin()}, {counts, pp.countsPin()}} {
		tmp := m.pin + "-new" // bpffs refuses names with a dot
		os.Remove(tmp)
		if err := m.m.Pin(tmp); err != nil {
			return fmt.Errorf("bpfsock: pinning %s: %w", tmp, err)
		}
		if err := os.Rename(tmp, m.pin); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("bpfsock: %w", err)
		}
	}
	for _, s := range slots {
		s.old.Close()
		s.old = nil
	}
	return nil
}

// Remove ends the policy pinned at pp, in d, whose lock the caller holds
// exclusively: it detaches the policy's links, removes its pins and its
// entry among the policies in force, and, when no policy is left, the
// shared maps and d itself.
func (d Dir) Remove(pp PolicyPins) error {
	var errs []error
	for _, pin := range []string{pp.sockOpsPin(), pp.setsockoptPin()} {
		l, err := link.LoadPinnedLink(pin, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("bpfsock: %s: %w", pin, err))
			continue
		}
		// Detach now, whoever else holds the link; a link whose cgroup is
		// gone is detached already.
		if err := l.Detach(); err != nil && !errors.Is(err, link.ErrNotSupported) && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("bpfsock: detaching %s: %w", pin, err))
		}
		l.Close()
	}
	if shared, err := d.OpenShared(); err == nil {
		if err := shared.Policies.Delete(pp.Cgroup); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("bpfsock: removing the policy from those in force: %w", err))
		}
		shared.Close()
	}
	if err := os.RemoveAll(pp.Dir); err != nil {
		errs = append(errs, fmt.Errorf("bpfsock: %w", err))
	}
	errs = append(errs, d.Tidy())
	return errors.Join(errs...)
}

// Tidy removes the shared maps and the directory itself when no policy is
// pinned in d, so that nothing of the project is left; the caller holds
// d's lock exclusively.
func (d Dir) Tidy() error {
	if err := d.unpinSharedIfUnused(); err != nil {
		return fmt.Errorf("bpfsock: %w", err)
	}
	if err := d.removeIfEmpty(); err != nil {
		return fmt.Errorf("bpfsock: %w", err)
	}
	return nil
}
