package audit

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cilium/ebpf"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// policies is what an audit knows of the policies of keepalive enforce:
// those in force, and their shared maps, through which a socket's record
// is read. Both are empty where no policy is pinned.
type policies struct {
	list   []enforce.Policy
	shared *bpfsock.Shared
	err    error             // why they could not be read
	paths  map[uint64]string // the paths of cgroups no policy is on, by id
}

// openPolicies reads the policies pinned in the bpffs at bpffs (or
// /sys/fs/bpf), and opens their shared maps. Where none is pinned, or no
// bpffs is mounted at /sys/fs/bpf, there are none; where they cannot be
// read, p.err says why. A directory given that is not a bpffs is an
// error of the Options.
func openPolicies(ctx context.Context, bpffs string) (*policies, error) {
	p := &policies{}
	root, err := bpfsock.Root(bpffs, false)
	if errors.Is(err, bpfsock.ErrNoBPFFS) {
		return p, nil
	}
	if err != nil && bpffs != "" {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err == nil {
		p.list, err = enforce.List(ctx, bpffs)
	}
	if err == nil && len(p.list) > 0 {
		p.shared, err = bpfsock.ProjectIn(root).OpenShared()
		if errors.Is(err, os.ErrNotExist) {
			err = nil // removed meanwhile
		}
	}
	if err != nil {
		p.list, p.err = nil, fmt.Errorf("audit: reading the policies in force: %w", err)
	}
	return p, nil
}

func (p *policies) close() {
	if p.shared != nil {
		p.shared.Close()
	}
}

// setBy returns what the record r says of the policy that set its socket;
// nil when no policy did.
func (p *policies) setBy(r bpfsock.Record) *SetBy {
	if r.Cgroup == 0 {
		return nil // a record of what the process set itself only
	}
	b := &SetBy{CgroupID: r.Cgroup, PolicyID: r.Policy, How: How(r.How), Set: Fields(r.Set), Left: Fields(r.Left)}
	for _, pol := range p.list {
		if pol.CgroupID == r.Cgroup {
			b.Cgroup = pol.Cgroup
			b.InForce = pol.ID == r.Policy && pol.Attached
		}
	}
	if b.Cgroup == "" {
		if p.paths == nil {
			p.paths = map[uint64]string{}
		}
		path, ok := p.paths[r.Cgroup]
		if !ok {
			path, _ = bpfsock.CgroupPath(r.Cgroup)
			p.paths[r.Cgroup] = path
		}
		b.Cgroup = path
	}
	return b
}

// lookup returns the policy that set the socket behind fd, a descriptor
// of this process, as its record in the shared map says; nil when none
// did or there is no map.
func (p *policies) lookup(fd int) *SetBy {
	if p.shared == nil {
		return nil
	}
	r, ok, err := p.shared.Lookup(fd)
	if err != nil || !ok {
		return nil
	}
	return p.setBy(r)
}

// coverage returns each policy in force with how many of conns belong to
// its cgroup or one below it, and how many carry it.
func (p *policies) coverage(conns []Conn) []Coverage {
	var cov []Coverage
	for _, pol := range p.list {
		c := Coverage{Policy: pol}
		tree := cgroupTree(pol.Cgroup)
		for i := range conns {
			conn := &conns[i]
			if conn.Cgroup != 0 && tree[conn.Cgroup] {
				c.Connections++
			}
			if b := conn.SetBy; b != nil && b.InForce && b.CgroupID == pol.CgroupID && b.PolicyID == pol.ID {
				c.Carrying++
			}
		}
		cov = append(cov, c)
	}
	return cov
}

// cgroupTree returns the ids of the cgroup at path and of those below it:
// their inode numbers in cgroupfs, which are the ids BPF programs see on
// 64-bit kernels. A cgroup removed meanwhile is left out.
func cgroupTree(path string) map[uint64]bool {
	ids := map[uint64]bool{}
	filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				ids[st.Ino] = true
			}
		}
		return nil
	})
	return ids
}

// iterKernel returns the kernel's offsets when this process may run the
// readers' TCP iterators here, and else an error that names what is
// missing: a capability (wrapping os.ErrPermission), or what the kernel
// lacks (wrapping errors.ErrUnsupported). They run in the namespaces the
// listing entered, which needed CAP_SYS_ADMIN already.
func iterKernel() (*bpfsock.Kernel, error) {
	missing, err := bpfsock.MissingIterCapabilities(false)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("audit: this process (uid %d) lacks %s, which the BPF iterator needs: %w", os.Getuid(), strings.Join(missing, ", "), os.ErrPermission)
	}
	k, err := bpfsock.LoadKernel()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := k.ProbeIter(); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return k, nil
}

// dumper is the dump iterator, loaded before the listing so that the
// sockets listed are read as soon as they are: loading takes the verifier
// some tens of milliseconds, which a busy host's short connections do not
// outlive.
type dumper struct {
	prog *ebpf.Program
}

// newDumper loads the dump iterator, with the policies' map if there is
// one; its error names what is missing.
func newDumper(pol *policies) (*dumper, error) {
	// The namespaces it runs in are those the listing could enter.
	k, err := iterKernel()
	if err != nil {
		return nil, err
	}
	prog, err := k.DumpIter(pol.shared)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &dumper{prog: prog}, nil
}

func (d *dumper) close() { d.prog.Close() }

// read runs the dump iterator in each namespace and records in each of
// conns the values it read from the socket, with its cgroup and record;
// it returns which of conns it found, and those whose options
// bpf_getsockopt could not all read, by index. Nothing of a socket
// that is not one of conns is kept.
func (d *dumper) read(ctx context.Context, nss []*bpfsock.Netns, conns []Conn, pol *policies) (found []bool, errs map[int]bpfsock.Options, err error) {
	idx := make(map[uint64]int, len(conns))
	for i := range conns {
		idx[uint64(conns[i].Inode)] = i
	}
	found = make([]bool, len(conns))
	errs = map[int]bpfsock.Options{}
	err = bpfsock.DumpEach(ctx, d.prog, nss, func(_ *bpfsock.Netns, s *bpfsock.Socket) error {
		i, ok := idx[s.Inode]
		if !ok || s.Inode == 0 {
			return nil
		}
		found[i] = true
		if s.Errs != 0 {
			errs[i] = s.Errs
			return nil
		}
		setBPFValues(&conns[i], s, pol)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("audit: %w", err)
	}
	return found, errs, nil
}

// setBPFValues records in c the values the dump iterator read from its
// socket, and its cgroup and record.
func setBPFValues(c *Conn, s *bpfsock.Socket, pol *policies) {
	setValues(c, s.KeepAlive, keepalive.Config{Off: !s.KeepAlive, Idle: s.Idle, Interval: s.Interval, Count: s.Count, UserTimeout: s.UserTimeout})
	c.Method, c.Cgroup = MethodBPF, s.Cgroup
	if s.HasRecord {
		c.SetBy = pol.setBy(s.Record)
	}
}

// setInForce records in c the values the set iterator read from its
// socket.
func setInForce(c *Conn, v bpfsock.InForce) {
	setValues(c, v.KeepAlive, keepalive.Config{Off: !v.KeepAlive, Idle: v.Idle, Interval: v.Interval, Count: v.Count, UserTimeout: v.UserTimeout})
	c.Method = MethodBPF
}

// setter is the set iterator and its selection, loaded before the
// listing (see dumper); the selection holds at most maxSelected sockets,
// and is filled once they are listed.
type setter struct {
	k    *bpfsock.Kernel
	sel  *bpfsock.Selection
	prog *ebpf.Program
}

// maxSelected is how many sockets a set iterator loaded before the
// listing can change; an apply that selects more loads another. The map
// is allocated as it fills, but for its buckets.
const maxSelected = 1 << 14

// newSetter loads the set iterator over an empty selection of n sockets;
// its error names what is missing.
func newSetter(n int) (*setter, error) {
	k, err := iterKernel()
	if err != nil {
		return nil, err
	}
	sel, err := bpfsock.NewSelection(n)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	prog, err := k.SetIter(sel)
	if err != nil {
		sel.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	return &setter{k: k, sel: sel, prog: prog}, nil
}

func (s *setter) close() {
	if s.prog != nil {
		s.prog.Close()
		s.sel.Close()
	}
	*s = setter{}
}

// applyBPF sets ch through the set iterator st, in the namespace ns of
// process pid, on the sockets of results, and fills in each result it
// settles. It returns the indexes of those whose options the iterator
// could not read, which it left as they were, and an error, naming what
// is missing, when the iterator could not run, which changed nothing.
func applyBPF(ctx context.Context, st *setter, ns *bpfsock.Netns, pid int, results []Result, ch Change) (left []int, err error) {
	if len(results) > maxSelected {
		st.close()
		if *st, err = newSetterValue(len(results)); err != nil {
			return nil, err
		}
	}
	// The defaults of the process's namespace, for the fields named zero.
	var sys keepalive.Config
	if err := ns.Do(func() error {
		var err error
		sys, err = keepalive.SystemDefaults()
		return err
	}); err != nil {
		return nil, fmt.Errorf("audit: the system defaults of network namespace %d: %w", ns.Inode, err)
	}
	w := ch.want(sys)
	for i := range results {
		if err := st.sel.Add(uint64(results[i].Before.Inode), w); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	if testHookDup != nil {
		for i := range results {
			testHookDup(pid, results[i].Before.FD)
		}
	}
	set, err := bpfsock.RunSet(ctx, st.prog, []*bpfsock.Netns{ns})
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	for i := range results {
		r := &results[i]
		s, ok := set[uint64(r.Before.Inode)]
		switch {
		case !ok:
			r.Err = closedError(&r.Before)
			continue
		case s.BeforeErrs != 0:
			left = append(left, i)
			continue
		}
		setInForce(&r.Before, s.Before)
		r.After = r.Before
		switch {
		case s.Refused != 0:
			r.Err = refusedError(r, s)
		case s.AfterErrs != 0:
			r.Err = fmt.Errorf("audit: process %d descriptor %d: reading back after setting: bpf_getsockopt could not read %s", pid, r.Before.FD, Fields(s.AfterErrs))
		default:
			setInForce(&r.After, s.After)
		}
	}
	return left, nil
}

// newSetterValue is newSetter, for replacing a setter in place.
func newSetterValue(n int) (setter, error) {
	st, err := newSetter(n)
	if err != nil {
		return setter{}, err
	}
	return *st, nil
}

// refusedError says which option the kernel refused on r's socket, and
// that the others were set back, or which could not be.
func refusedError(r *Result, s bpfsock.SetResult) error {
	back := "the options set before it were set back: the socket is as it was"
	if s.RestoreErrs != 0 {
		back = fmt.Sprintf("%s could not be set back", Fields(s.RestoreErrs))
	}
	return fmt.Errorf("audit: process %d descriptor %d: the kernel refused %s (%w); %s", r.Before.PID, r.Before.FD, Fields(s.Refused), s.Errno, back)
}

// want is what ch sets on a socket through the set iterator: the options
// it names, a zero Idle, Interval or Count at the default in sys.
func (ch Change) want(sys keepalive.Config) bpfsock.Want {
	c := ch.Config
	secs := func(d, def time.Duration) uint32 {
		if d == 0 {
			d = def
		}
		return uint32(d / time.Second)
	}
	count := c.Count
	if count == 0 {
		count = sys.Count
	}
	w := bpfsock.Want{
		Set:         bpfsock.Options(ch.Fields),
		Idle:        secs(c.Idle, sys.Idle),
		Interval:    secs(c.Interval, sys.Interval),
		Count:       uint32(count),
		UserTimeout: uint32(c.UserTimeout / time.Millisecond),
	}
	if !c.Off {
		w.KeepAlive = 1
	}
	return w
}
