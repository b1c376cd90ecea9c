package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

func audit(ctx context.Context, o Options) (*Report, error) {
	conns, denied, err := collect(ctx, o.Filter, o.Progress)
	if err != nil {
		return nil, err
	}
	if !o.KernelOnly {
		if err := readAll(ctx, conns, o.Progress); err != nil {
			return nil, err
		}
	}
	for i := range conns {
		inferFromTimer(&conns[i])
		o.Criteria.Judge(&conns[i])
	}
	return &Report{Conns: conns, Unreadable: denied}, nil
}

// collect lists the connections f selects with their owners, in Report
// order, without reading their values.
func collect(ctx context.Context, f Filter, progress func(Progress)) (conns []Conn, denied []*PermissionError, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	report(progress, Progress{Stage: Listing})
	h, err := diagHandle(f.PID)
	if err != nil {
		return nil, nil, err
	}
	conns, err = listConns(ctx, h, f, progress)
	h.Close()
	if err != nil {
		return nil, nil, err
	}
	if denied, err = findOwners(ctx, conns, f.PID, progress); err != nil {
		return nil, nil, err
	}
	if f.PID != 0 {
		conns = slices.DeleteFunc(conns, func(c Conn) bool { return c.PID != f.PID })
	}
	slices.SortFunc(conns, compareConns)
	return conns, denied, nil
}

// compareConns orders connections by PID, those with no known owner last,
// then by FD, then by addresses.
func compareConns(a, b Conn) int {
	return cmp.Or(
		cmp.Compare(b2i(a.PID == 0), b2i(b.PID == 0)),
		cmp.Compare(a.PID, b.PID),
		cmp.Compare(a.FD, b.FD),
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

// readAll reads the values of every connection whose owner is known, one
// process at a time. conns are in Report order, so each process's
// connections are together.
func readAll(ctx context.Context, conns []Conn, progress func(Progress)) error {
	total := 0
	for i := range conns {
		if conns[i].PID != 0 {
			total++
		}
	}
	report(progress, Progress{Stage: Reading, Total: total})
	done := 0
	for start := 0; start < len(conns) && conns[start].PID != 0; {
		end := start + 1
		for end < len(conns) && conns[end].PID == conns[start].PID {
			end++
		}
		if err := readProcess(ctx, conns[start:end], progress, &done, total); err != nil {
			return err
		}
		start = end
	}
	report(progress, Progress{Stage: Reading, Done: total, Total: total})
	return nil
}

// readProcess reads the values of conns, which one process holds.
func readProcess(ctx context.Context, conns []Conn, progress func(Progress), done *int, total int) error {
	p, err := openProcess(conns[0].PID)
	if err != nil {
		for i := range conns {
			conns[i].Err = err
		}
		*done += len(conns)
		return nil
	}
	defer p.close()
	for i := range conns {
		if *done%progressEvery == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			if *done > 0 {
				report(progress, Progress{Stage: Reading, Done: *done, Total: total})
			}
		}
		*done++
		err := readConn(p, &conns[i])
		var perr *PermissionError
		if errors.As(err, &perr) {
			// The same answer for every descriptor of the process.
			for j := i; j < len(conns); j++ {
				conns[j].Err = err
			}
			*done += len(conns) - i - 1
			return nil
		}
		conns[i].Err = err
	}
	return nil
}

// readConn reads c's values from its socket in process p.
func readConn(p *process, c *Conn) error {
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
	conns, _, err := collect(ctx, f, nil)
	if err != nil {
		return nil, err
	}
	if len(conns) == 0 {
		return nil, nil
	}
	// The system defaults, which a socket holds where it sets no value of
	// its own.
	sys, err := keepalive.SystemDefaults()
	if err != nil && !errors.Is(err, errors.ErrUnsupported) {
		return nil, err
	}
	p, err := openProcess(f.PID)
	if err != nil {
		return nil, err
	}
	defer p.close()
	results := make([]Result, 0, len(conns))
	changed := false
	for _, conn := range conns {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		inferFromTimer(&conn)
		r := Result{Before: conn, After: conn}
		r.Err = applyConn(p, &r, ch, sys)
		var perr *PermissionError
		if errors.As(r.Err, &perr) && !changed {
			return nil, r.Err
		}
		changed = changed || r.Err == nil
		results = append(results, r)
	}
	return results, nil
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
	return nil
}
