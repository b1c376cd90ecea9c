package audit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/audit"
)

// The "probe" helper runs audit and apply as whatever user it was started
// as, against a helper of another user (target) and one of its own (own),
// and prints what it saw as one probeResult.
const (
	probeTargetEnv = "AUDIT_TEST_TARGET" // pid,port of another user's helper
	probeOwnEnv    = "AUDIT_TEST_OWN"    // pid,port of a helper of the probe's own user
)

// unreadable is a process an audit could not search.
type unreadable struct {
	PID     int
	Command string
	Op      string
	Why     string
}

type probeResult struct {
	UID int

	// Apply on the target.
	ApplyErr       string
	ApplyIsPerm    bool // errors.Is(err, os.ErrPermission)
	ApplyPermError bool // errors.As(err, **audit.PermissionError)

	// Audit with Filter.PID = target.
	FilterErr    string
	FilterIsPerm bool

	// Audit of every process, the connections on the target's port.
	Unreadable    []unreadable
	TargetConns   int
	TargetPIDs    []int
	TargetSources []string

	// Audit of every process, the connections on the own helper's port:
	// every owner found.
	OwnPortConns      int
	OwnPortUnreadable int

	// Audit with Filter.PID = own.
	OwnConns   int
	OwnSources []string
	OwnErrs    []string
}

func probe() int {
	target, targetPort, err1 := pidPort(os.Getenv(probeTargetEnv))
	own, ownPort, err2 := pidPort(os.Getenv(probeOwnEnv))
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := probeResult{UID: os.Getuid()}

	_, err := audit.Apply(ctx, target, audit.Filter{Port: uint16(targetPort)}, audit.Change{Config: keepalive.Config{Idle: 7 * time.Second}, Fields: audit.FieldIdle})
	if err != nil {
		r.ApplyErr = err.Error()
		r.ApplyIsPerm = errors.Is(err, os.ErrPermission)
		var pe *audit.PermissionError
		r.ApplyPermError = errors.As(err, &pe)
	}

	if _, err := audit.Audit(ctx, audit.Options{Filter: audit.Filter{PID: target}}); err != nil {
		r.FilterErr = err.Error()
		r.FilterIsPerm = errors.Is(err, os.ErrPermission)
	}

	rep, err := audit.Audit(ctx, audit.Options{Filter: audit.Filter{Port: uint16(targetPort)}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe: audit:", err)
		return 1
	}
	for _, e := range rep.Unreadable {
		r.Unreadable = append(r.Unreadable, unreadable{e.PID, e.Command, e.Op, e.Why})
	}
	for _, c := range rep.Conns {
		r.TargetConns++
		r.TargetPIDs = append(r.TargetPIDs, c.PID)
		r.TargetSources = append(r.TargetSources, c.Source.String())
	}

	rep, err = audit.Audit(ctx, audit.Options{Filter: audit.Filter{Port: uint16(ownPort)}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe: audit own port:", err)
		return 1
	}
	r.OwnPortConns, r.OwnPortUnreadable = len(rep.Conns), len(rep.Unreadable)

	rep, err = audit.Audit(ctx, audit.Options{Filter: audit.Filter{PID: own, Port: uint16(ownPort)}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe: audit own:", err)
		return 1
	}
	for _, c := range rep.Conns {
		r.OwnConns++
		r.OwnSources = append(r.OwnSources, c.Source.String())
		if c.Err != nil {
			r.OwnErrs = append(r.OwnErrs, c.Err.Error())
		}
	}
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

func pidPort(s string) (pid, port int, err error) {
	_, err = fmt.Sscanf(s, "%d,%d", &pid, &port)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not pid,port: %w", s, err)
	}
	return pid, port, nil
}
