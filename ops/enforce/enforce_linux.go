package enforce

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

func enforce(ctx context.Context, o Options) (*Result, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Wins > ProgramWins {
		return nil, fmt.Errorf("enforce: unknown %v: want PolicyWins or ProgramWins", o.Wins)
	}
	filter, err := o.Filter.validate()
	if err != nil {
		return nil, err
	}
	cg, err := openCgroup(o.Cgroup)
	if err != nil {
		return nil, err
	}
	defer cg.close()
	if err := checkCapabilities(false); err != nil {
		return nil, err
	}
	nss, err := bpfsock.Namespaces(cg.path)
	if err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	defer func() {
		for _, ns := range nss {
			ns.Close()
		}
	}()
	if len(nss) > 1 {
		if err := checkCapabilities(true); err != nil {
			return nil, err
		}
	}
	k, err := bpfsock.LoadKernel()
	if err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	if err := k.Probe(); err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	root, err := bpfsock.Root(o.BPFFS, true)
	if err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	d := bpfsock.ProjectIn(root)
	unlock, err := d.Lock(ctx, true, true)
	if err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	defer unlock()

	res := &Result{Namespaces: len(nss)}
	pp := d.Policy(cg.id)
	if old, err := readPolicy(pp); err == nil {
		res.Replaced = old
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, errors.Join(fmt.Errorf("enforce: reading the policy in force on %s: %w", cg.path, err), d.Tidy())
	}
	since := time.Now()
	p := &bpfsock.Policy{
		Cgroup:      cg.id,
		ID:          uint64(since.UnixNano()),
		Values:      values(o.Config),
		Filter:      bpfsock.Filter{Remote: filter.Remote, Ports: filter.Ports},
		ProgramWins: o.Wins == ProgramWins,
	}
	if res.Replaced != nil && res.Replaced.Since.UnixNano() == since.UnixNano() {
		p.ID++ // two policies, one nanosecond: keep the IDs apart
	}
	desc, err := json.Marshal(description{
		Cgroup:   cg.path,
		CgroupID: cg.id,
		Config:   o.Config.String(),
		Remote:   filter.Remote,
		Ports:    filter.Ports,
		Wins:     o.Wins.String(),
		Since:    since,
		ID:       p.ID,
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("enforce: %w", err), d.Tidy())
	}
	progs, _, err := k.Put(d, cg.fd, p, desc)
	if err != nil {
		return nil, fmt.Errorf("enforce: %w", err)
	}
	defer progs.Close()

	set, iterErr := bpfsock.RunApply(ctx, progs.Iter, nss)
	for _, ns := range nss {
		for _, r := range set[ns] {
			res.Existing = append(res.Existing, Conn{Local: r.Local, Remote: r.Remote, Netns: ns.Inode, Set: Fields(r.Set), Left: Fields(r.Own)})
		}
	}
	now, err := readPolicy(pp)
	if err != nil {
		return nil, fmt.Errorf("enforce: reading back the policy: %w", err)
	}
	res.Policy = *now
	if iterErr != nil {
		return res, fmt.Errorf("enforce: the policy is in force on %s for new connections, but not every connection established before it was reached: %w", cg.path, iterErr)
	}
	return res, nil
}

// values is what c sets, in the programs' terms: Validate has made each
// field a whole number of the kernel's units.
func values(c keepalive.Config) bpfsock.Values {
	return bpfsock.Values{
		Off:         c.Off,
		Idle:        uint32(c.Idle / time.Second),
		Interval:    uint32(c.Interval / time.Second),
		Count:       uint32(c.Count),
		UserTimeout: uint32(c.UserTimeout / time.Millisecond),
	}
}

// checkCapabilities fails, naming what is missing, when this process may
// not load and attach a policy's programs, or with otherNetns enter
// another network namespace.
func checkCapabilities(otherNetns bool) error {
	missing, err := bpfsock.MissingCapabilities(otherNetns)
	if err != nil {
		return fmt.Errorf("enforce: %w", err)
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("enforce: this process (uid %d) lacks %s, which loading and attaching a policy's programs needs: %w", os.Getuid(), strings.Join(missing, ", "), os.ErrPermission)
}

// description is what a policy's info map holds, as JSON: what List
// shows.
type description struct {
	Cgroup   string         `json:"cgroup"`
	CgroupID uint64         `json:"cgroup_id"`
	Config   string         `json:"config"`
	Remote   []netip.Prefix `json:"remote,omitempty"`
	Ports    []uint16       `json:"ports,omitempty"`
	Wins     string         `json:"wins"`
	Since    time.Time      `json:"since"`
	ID       uint64         `json:"id"`
}

// readPolicy reads the policy pinned at pp; the error wraps os.ErrNotExist
// when there is none.
func readPolicy(pp bpfsock.PolicyPins) (*Policy, error) {
	pinned, err := pp.Read()
	if err != nil {
		return nil, err
	}
	var d description
	if err := json.Unmarshal(pinned.Info, &d); err != nil {
		return nil, fmt.Errorf("the description pinned in %s: %w", pp.Dir, err)
	}
	c, err := keepalive.ParseConfig(d.Config)
	if err != nil {
		return nil, fmt.Errorf("the description pinned in %s: %w", pp.Dir, err)
	}
	w, err := ParseWins(d.Wins)
	if err != nil {
		return nil, fmt.Errorf("the description pinned in %s: %w", pp.Dir, err)
	}
	n := pinned.Counts
	return &Policy{
		Cgroup:   d.Cgroup,
		CgroupID: d.CgroupID,
		Config:   c,
		Filter:   Filter{Remote: d.Remote, Ports: d.Ports},
		Wins:     w,
		Since:    d.Since,
		ID:       d.ID,
		Counts: Counts{
			Dialled:  n[bpfsock.CountDialled],
			Accepted: n[bpfsock.CountAccepted],
			Existing: n[bpfsock.CountExisting],
			Kept:     n[bpfsock.CountKept],
			Yielded:  n[bpfsock.CountYielded],
			Failed:   n[bpfsock.CountFailed],
			Nearer:   n[bpfsock.CountNearer],
		},
		Attached: pinned.Attached,
		Pins:     pp.Dir,
	}, nil
}

// lockPolicies locks the project's directory in the bpffs at bpffs, shared
// or exclusive, without making it, and lists the policies in it; ok is
// false, with no error, when there is no bpffs or no directory, so no
// policy.
func lockPolicies(ctx context.Context, bpffs string, exclusive bool) (d bpfsock.Dir, pps []bpfsock.PolicyPins, unlock func(), ok bool, err error) {
	root, err := bpfsock.Root(bpffs, false)
	if errors.Is(err, bpfsock.ErrNoBPFFS) {
		return "", nil, nil, false, nil
	}
	if err != nil {
		return "", nil, nil, false, fmt.Errorf("enforce: %w", err)
	}
	d = bpfsock.ProjectIn(root)
	unlock, err = d.Lock(ctx, exclusive, false)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil, nil, false, nil
	}
	if err != nil {
		return "", nil, nil, false, fmt.Errorf("enforce: %w", err)
	}
	if pps, err = d.Policies(); err != nil {
		unlock()
		return "", nil, nil, false, fmt.Errorf("enforce: %w", err)
	}
	return d, pps, unlock, true, nil
}

func list(ctx context.Context, bpffs string) ([]Policy, error) {
	_, pps, unlock, ok, err := lockPolicies(ctx, bpffs, false)
	if !ok {
		return nil, err
	}
	defer unlock()
	var ps []Policy
	for _, pp := range pps {
		p, err := readPolicy(pp)
		if err != nil {
			return ps, fmt.Errorf("enforce: %w", err)
		}
		ps = append(ps, *p)
	}
	return ps, nil
}

func remove(ctx context.Context, bpffs, cgroup string) (*Policy, error) {
	if cgroup == "" {
		return nil, errors.New("enforce: no cgroup given")
	}
	abs, err := filepath.Abs(cgroup)
	if err != nil {
		return nil, fmt.Errorf("enforce: cgroup %s: %w", cgroup, err)
	}
	if err := checkCapabilities(false); err != nil {
		return nil, err
	}
	d, pps, unlock, ok, err := lockPolicies(ctx, bpffs, true)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, noPolicyError{abs}
	}
	defer unlock()
	// The cgroup as it is now, if it is still there; else the path the
	// policy was given.
	var id uint64
	if cg, err := openCgroup(abs); err == nil {
		id = cg.id
		cg.close()
	}
	// The policy on the cgroup there now first; then one left on a cgroup
	// of that path that was removed since (and perhaps made again).
	for _, byPath := range []bool{false, true} {
		for _, pp := range pps {
			if !byPath && (id == 0 || pp.Cgroup != id) {
				continue
			}
			p, err := readPolicy(pp)
			if err != nil {
				return nil, fmt.Errorf("enforce: %w", err)
			}
			if byPath && (p.Cgroup != abs || p.Attached) {
				continue
			}
			if err := d.Remove(pp); err != nil {
				return p, fmt.Errorf("enforce: removing the policy on %s: %w", abs, err)
			}
			return p, nil
		}
	}
	return nil, noPolicyError{abs}
}

// noPolicyError is Remove's error for a cgroup without a policy.
type noPolicyError struct{ cgroup string }

func (e noPolicyError) Error() string { return "enforce: no policy is in force on " + e.cgroup }

func (e noPolicyError) Is(target error) bool { return target == os.ErrNotExist }

func loadedObjects() (Objects, error) {
	o, err := bpfsock.ListObjects()
	if err != nil {
		return Objects{}, fmt.Errorf("enforce: %w", err)
	}
	var out Objects
	for _, id := range o.Programs {
		out.Programs = append(out.Programs, uint32(id))
	}
	for _, id := range o.Maps {
		out.Maps = append(out.Maps, uint32(id))
	}
	for _, id := range o.Links {
		out.Links = append(out.Links, uint32(id))
	}
	return out, nil
}
