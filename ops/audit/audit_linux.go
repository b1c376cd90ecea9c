package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

func audit(ctx context.Context, o Options) (*Report, error) {
	rep := &Report{}
	var pol *policies
	var d *dumper
	if !o.KernelOnly {
		var err error
		if pol, err = openPolicies(ctx, o.BPFFS); err != nil {
			return nil, err
		}
		defer pol.close()
		rep.PoliciesErr = pol.err
		if o.Method != MethodPidfd {
			if d, err = newDumper(pol); err != nil {
				if o.Method == MethodBPF {
					return nil, err
				}
				rep.BPFError = err
			} else {
				defer d.close()
			}
		}
	}
	l, err := collect(ctx, o.Filter, o.Progress)
	if err != nil {
		return nil, err
	}
	defer l.close()
	rep.Conns, rep.Unreadable, rep.Namespaces = l.conns, l.denied, l.namespaces
	if !o.KernelOnly {
		if err := readAll(ctx, l, o.Method, d, pol, rep, o.Progress); err != nil {
			return nil, err
		}
		rep.Policies = pol.coverage(rep.Conns)
	}
	for i := range rep.Conns {
		inferFromTimer(&rep.Conns[i])
		o.Criteria.Judge(&rep.Conns[i])
	}
	return rep, nil
}

// listing is what collect found: the connections f selects with their
// owners, in Report order, and the namespaces they were listed in, held
// open for the reading that follows.
type listing struct {
	conns      []Conn
	denied     []*PermissionError
	namespaces []Namespace
	nss        []*bpfsock.Netns // those listed, in the order of namespaces
}

func (l *listing) close() {
	for _, ns := range l.nss {
		ns.Close()
	}
}

// collect lists the connections f selects with their owners, in Report
// order, without reading their values: those of the namespace of process
// f.PID, or of the caller's and of every process's when f.PID is zero.
func collect(ctx context.Context, f Filter, progress func(Progress)) (_ *listing, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	report(progress, Progress{Stage: Listing})
	pids := []int{f.PID}
	var nss []*bpfsock.Netns
	if f.PID != 0 {
		ns, err := pidNamespace(f.PID)
		if err != nil {
			return nil, err
		}
		nss = []*bpfsock.Netns{ns}
	} else {
		if pids, err = allPIDs(); err != nil {
			return nil, err
		}
		if nss, err = bpfsock.NamespacesOf(pids); err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
	}
	l := &listing{}
	defer func() {
		if err != nil {
			l.close()
			for _, ns := range nss {
				ns.Close()
			}
		}
	}()
	for len(nss) > 0 {
		ns := nss[0]
		nss = nss[1:]
		more, err := listConns(ctx, l.conns, ns, f, progress)
		if err != nil && !ns.Own() && f.PID == 0 && ctx.Err() == nil {
			// Another namespace, which this process may not enter: said,
			// not fatal.
			l.namespaces = append(l.namespaces, Namespace{Inode: ns.Inode, PID: ns.PID, Err: err})
			ns.Close()
			continue
		}
		if err != nil {
			ns.Close()
			return nil, err
		}
		l.conns = more
		l.nss = append(l.nss, ns)
		l.namespaces = append(l.namespaces, Namespace{Inode: ns.Inode, PID: ns.PID})
	}
	if l.denied, err = findOwners(ctx, l.conns, f.PID, pids, progress); err != nil {
		return nil, err
	}
	if f.PID != 0 {
		l.conns = slices.DeleteFunc(l.conns, func(c Conn) bool { return c.PID != f.PID })
	}
	slices.SortFunc(l.conns, compareConns)
	return l, nil
}

// compareConns orders connections by PID, those with no known owner last,
// then by FD, then by network namespace and addresses.
func compareConns(a, b Conn) int {
	return cmp.Or(
		cmp.Compare(b2i(a.PID == 0), b2i(b.PID == 0)),
		cmp.Compare(a.PID, b.PID),
		cmp.Compare(a.FD, b.FD),
		cmp.Compare(a.Netns, b.Netns),
		a.Local.Compare(b.Local),
		a.Remote.Compare(b.Remote),
	)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// readAll reads the values of the connections of l: through the dump
// iterator d, unless it is nil (method MethodPidfd, or it could not be
// loaded), and with pidfd_getfd those the iterator did not read whose
// owner is known, unless method is MethodBPF. It says in rep why the
// iterator could not run, when it could not and method let it fall back.
func readAll(ctx context.Context, l *listing, method Method, d *dumper, pol *policies, rep *Report, progress func(Progress)) error {
	conns := l.conns
	total := len(conns)
	report(progress, Progress{Stage: Reading, Total: total})
	if d != nil {
		if testHookDup != nil {
			for i := range conns {
				if conns[i].PID != 0 {
					testHookDup(conns[i].PID, conns[i].FD)
				}
			}
		}
		found, errs, err := d.read(ctx, l.nss, conns, pol)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && method == MethodBPF:
			return err
		case err != nil:
			rep.BPFError = err
		default:
			for i := range conns {
				c := &conns[i]
				switch {
				case !found[i]:
					// The iterator ran in the connection's namespace and did
					// not find the socket held by a descriptor: it was
					// closed.
					c.Err = closedError(c)
				case errs[i] != 0 && method == MethodBPF:
					c.Err = fmt.Errorf("audit: socket %d: bpf_getsockopt could not read %s (Linux 6.1 or later reads every keepalive option)", c.Inode, Fields(errs[i]))
				}
			}
		}
	}
	report(progress, Progress{Stage: Reading, Done: countRead(conns), Total: total})
	if method != MethodBPF {
		done := 0
		for start := 0; start < len(conns) && conns[start].PID != 0; {
			end := start + 1
			for end < len(conns) && conns[end].PID == conns[start].PID {
				end++
			}
			if err := readProcess(ctx, conns[start:end], pol, progress, &done, total); err != nil {
				return err
			}
			start = end
		}
	}
	report(progress, Progress{Stage: Reading, Done: total, Total: total})
	return nil
}

// countRead counts the connections whose values were read.
func countRead(conns []Conn) int {
	n := 0
	for i := range conns {
		if conns[i].Source == SourceSocket {
			n++
		}
	}
	return n
}

// closedError says that c's socket was not found by the BPF iterator:
// no descriptor held it any more.
func closedError(c *Conn) error {
	if c.PID == 0 {
		return fmt.Errorf("audit: socket %d was closed before its values were read: %w", c.Inode, os.ErrNotExist)
	}
	return fmt.Errorf("audit: socket %d (process %d descriptor %d) was closed before it was read: %w", c.Inode, c.PID, c.FD, os.ErrNotExist)
}

// readProcess reads with pidfd_getfd the values of those of conns, which
// one process holds, that were not read yet.
func readProcess(ctx context.Context, conns []Conn, pol *policies, progress func(Progress), done *int, total int) error {
	var p *process
	var openErr error
	for i := range conns {
		c := &conns[i]
		if c.Source == SourceSocket || errors.Is(c.Err, os.ErrNotExist) {
			continue
		}
		if p == nil && openErr == nil {
			if p, openErr = openProcess(c.PID); openErr == nil {
				defer p.close()
			}
		}
		if openErr != nil {
			c.Err = openErr
			continue
		}
		if *done%progressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if *done > 0 {
				report(progress, Progress{Stage: Reading, Done: *done, Total: total})
			}
		}
		*done++
		err := readConn(p, c, pol)
		var perr *PermissionError
		if errors.As(err, &perr) {
			// The same answer for every descriptor of the process.
			for j := i; j < len(conns); j++ {
				if conns[j].Source != SourceSocket {
					conns[j].Err = err
				}
			}
			return nil
		}
		c.Err = err
	}
	return nil
}

// readConn reads c's values from its socket in process p, and its record
// in the policies' map, if there is one.
func readConn(p *process, c *Conn, pol *policies) error {
	fd, err := p.dup(c.FD, c.Inode)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	enabled, kc, err := getConfig(fdConn(fd))
	if err != nil {
		return err
	}
	setValues(c, enabled, kc)
	c.Method = MethodPidfd
	c.SetBy = pol.lookup(fd)
	return nil
}

// setValues records values read from c's socket.
func setValues(c *Conn, enabled bool, kc keepalive.Config) {
	c.Source, c.Enabled, c.Config, c.Err = SourceSocket, enabled, kc, nil
	c.DetectionTime = 0
	if enabled {
		// kc, read back from a Linux socket, sets every field: the
		// system defaults are not read, and nothing can fail.
		c.DetectionTime, _ = kc.DetectionTime()
	}
}

// inferFromTimer fills in what sock_diag's timer tells of a connection
// whose values were not read: on an established connection the keepalive
// timer is pending whenever keepalive is on and no other timer is, so no
// timer at all means keepalive is off.
func inferFromTimer(c *Conn) {
	if c.Source != SourceNone || c.State != Established {
		return
	}
	switch c.Timer.Kind {
	case TimerNone:
		c.Source, c.Enabled = SourceKernel, false
	case TimerKeepalive:
		c.Source, c.Enabled = SourceKernel, true
	}
}

func apply(ctx context.Context, f Filter, ch Change) ([]Result, error) {
	var st *setter
	var bpfErr error
	if ch.Method != MethodPidfd {
		if st, bpfErr = newSetter(maxSelected); bpfErr != nil && ch.Method == MethodBPF {
			return nil, bpfErr
		}
		if st != nil {
			defer func() { st.close() }()
		}
	}
	l, err := collect(ctx, f, nil)
	if err != nil {
		return nil, err
	}
	defer l.close()
	if len(l.conns) == 0 {
		return nil, nil
	}
	results := make([]Result, len(l.conns))
	for i, conn := range l.conns {
		inferFromTimer(&conn)
		results[i] = Result{Before: conn, After: conn}
	}
	var todo []int // the results left to pidfd_getfd
	changed := false
	if st == nil {
		todo = all(len(results))
		if bpfErr != nil {
			for i := range results {
				results[i].BPFError = bpfErr
			}
		}
	} else {
		var left []int
		left, bpfErr = applyBPF(ctx, st, l.nss[0], f.PID, results, ch)
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case bpfErr != nil && ch.Method == MethodBPF:
			return nil, bpfErr
		case bpfErr != nil:
			todo = all(len(results))
			for i := range results {
				results[i].BPFError = bpfErr
			}
		default:
			for _, i := range left {
				err := fmt.Errorf("audit: socket %d: bpf_getsockopt could not read its options, so that they could not be set back if the kernel refused one (Linux 6.1 or later reads every keepalive option)", results[i].Before.Inode)
				if ch.Method == MethodBPF {
					results[i].Err = err
				} else {
					results[i].BPFError = err
				}
			}
			if ch.Method != MethodBPF {
				todo = left
			}
		}
		for _, r := range results {
			changed = changed || r.Err == nil && r.After.Method == MethodBPF
		}
	}
	if len(todo) == 0 {
		return results, nil
	}
	var n int
	err = l.nss[0].Do(func() error {
		// In the process's network namespace, whose system defaults
		// keepalive.Set writes for a field put back to its default.
		var err error
		n, err = applyPidfd(ctx, f.PID, results, todo, ch, changed, bpfErr)
		return err
	})
	var perr *PermissionError
	if errors.As(err, &perr) {
		return nil, err
	}
	if err != nil {
		// Cancelled: the results of the sockets not reached are left out.
		skip := map[int]bool{}
		for _, i := range todo[n:] {
			skip[i] = true
		}
		var done []Result
		for i, r := range results {
			if !skip[i] {
				done = append(done, r)
			}
		}
		return done, err
	}
	return results, nil
}

// all returns 0 to n-1.
func all(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// applyPidfd sets ch through pidfd_getfd on the sockets of the results
// whose indexes are todo, and returns how many it reached, all unless ctx
// is done. It runs in the process's network namespace. changed says that a socket of the process was changed already;
// unless one was, a refusal of ptrace is returned as the error, naming
// bpfErr, why the BPF iterator could not run, too.
func applyPidfd(ctx context.Context, pid int, results []Result, todo []int, ch Change, changed bool, bpfErr error) (int, error) {
	// The system defaults, which a socket holds where it sets no value of
	// its own.
	sys, err := keepalive.SystemDefaults()
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return 0, err
	}
	p, err := openProcess(pid)
	if err != nil {
		return 0, err
	}
	defer p.close()
	for n, i := range todo {
		r := &results[i]
		if err := ctx.Err(); err != nil {
			return n, err
		}
		r.Err = applyConn(p, r, ch, sys)
		var perr *PermissionError
		if errors.As(r.Err, &perr) && !changed {
			if bpfErr != nil {
				perr.Why += "; the BPF iterator, which needs no ptrace, could not run either: " + bpfErr.Error()
			}
			return n, r.Err
		}
		changed = changed || r.Err == nil
	}
	return len(todo), nil
}

// applyConn sets ch on the socket of r.Before in process p, and reads it
// before and after; sys are the system defaults.
func applyConn(p *process, r *Result, ch Change, sys keepalive.Config) error {
	fd, err := p.dup(r.Before.FD, r.Before.Inode)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return fmt.Errorf("audit: SO_PROTOCOL: %w", err)
	}
	if proto != unix.IPPROTO_TCP {
		return fmt.Errorf("audit: process %d descriptor %d has protocol %d, not TCP: left alone", p.pid, r.Before.FD, proto)
	}
	enabled, have, err := getConfig(fdConn(fd))
	if err != nil {
		return err
	}
	setValues(&r.Before, enabled, have)
	r.Before.Method = MethodPidfd
	r.After = r.Before
	c := ch.on(have, sys)
	if err := setConfig(fdConn(fd), c); err != nil {
		return err
	}
	enabled, got, err := getConfig(fdConn(fd))
	if err != nil {
		return fmt.Errorf("audit: reading back after setting: %w", err)
	}
	setValues(&r.After, enabled, got)
	r.After.Method = MethodPidfd
	return nil
}
