package audit_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/bpfsock"
)

// readersFreed is how long the kernel may take to free the objects of a
// reader once its last descriptor is closed (an RCU grace period, longer
// on a loaded machine).
const readersFreed = 20 * time.Second

// TestAuditLeavesNoBPF checks that audit and apply through the BPF
// iterator, with a policy in force whose pinned maps audit opens, leave
// nothing behind them: no descriptor in the caller, no pin added to or
// taken from the bpffs, no BPF object of a policy that was not there, and
// every reader object (iterator programs, their links, the selection map)
// that was loaded when the call returned freed soon after. It does so
// when they succeed and on each error path it can provoke: a bpffs that
// is not one, one that does not exist, a method or a change that is
// invalid, a process that does not exist, a cancelled audit, and an
// auditor without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN (setpriv).
func TestAuditLeavesNoBPF(t *testing.T) {
	l := newPolicyLab(t)
	cg := l.Cgroup()
	h := startHoldWith(t, testproc.Opts{Cgroup: cg}, 2, "off", nil)
	l.Enforce(cg, keepalive.Config{Idle: 43 * time.Second}, enforce.Filter{})
	ctx := context.Background()
	notBPFFS := t.TempDir()
	missing := filepath.Join(notBPFFS, "missing")

	// leaves runs call, checks its error against wantErr ("" for none),
	// and checks that it left nothing.
	leaves := func(t *testing.T, call func() error, wantErr string) {
		t.Helper()
		fds, pins := descriptors(t), pinned(t, l.BPFFS)
		policies, err := bpfsock.ListObjects()
		require.NoError(t, err)
		err = call()
		if wantErr == "" {
			require.NoError(t, err)
		} else {
			require.ErrorContains(t, err, wantErr)
		}
		readers, err := bpfsock.ListReaderObjects()
		require.NoError(t, err)
		assert.Equal(t, fds, descriptors(t), "descriptors of this process by kind, before and after")
		assert.Equal(t, pins, pinned(t, l.BPFFS), "bpffs before and after")
		now, err := bpfsock.ListObjects()
		require.NoError(t, err)
		assert.Equal(t, policies, now, "the policies' objects before and after")
		// The readers' objects of this process are gone with its
		// descriptors; what was loaded when call returned (its own, or
		// another process's) must be freed, as nothing holds it.
		assert.Eventually(t, func() bool { return freed(t, readers) }, readersFreed, 10*time.Millisecond,
			"reader objects loaded when the call returned and never freed: %v", readers)
	}

	t.Run("audit", func(t *testing.T) {
		var during bpfsock.Objects
		leaves(t, func() error {
			rep, err := audit.Audit(ctx, audit.Options{Method: audit.MethodBPF, BPFFS: l.BPFFS, Progress: func(p audit.Progress) {
				if p.Stage == audit.Listing && during.Len() == 0 {
					var err error
					during, err = bpfsock.ListReaderObjects()
					require.NoError(t, err)
				}
			}})
			if err == nil {
				assert.NoError(t, rep.PoliciesErr)
				assert.Len(t, rep.Policies, 1)
				assert.Len(t, connsOf(rep, h.PID), 4)
			}
			return err
		}, "")
		assert.NotEmpty(t, during.Programs, "the dump iterator, loaded while the audit runs")
		assert.Eventually(t, func() bool { return freed(t, during) }, readersFreed, 10*time.Millisecond,
			"the reader objects loaded while the audit ran: %v", during)
	})
	t.Run("apply", func(t *testing.T) {
		leaves(t, func() error {
			res, err := audit.Apply(ctx, h.PID, audit.Filter{}, audit.Change{Config: keepalive.Config{Idle: 44 * time.Second}, Fields: audit.FieldIdle, Method: audit.MethodBPF})
			if err == nil {
				require.Len(t, res, 4)
				for _, r := range res {
					assert.NoError(t, r.Err, "fd %d", r.Before.FD)
					assert.Equal(t, audit.MethodBPF, r.After.Method, "fd %d", r.Before.FD)
				}
			}
			return err
		}, "")
	})
	for _, tt := range []struct {
		name, bpffs, want string
	}{
		{"audit -bpffs not a bpffs", notBPFFS, "is not a bpf filesystem"},
		{"audit -bpffs missing", missing, "no such file or directory"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			leaves(t, func() error {
				// A directory given that cannot be used is refused
				// before the audit starts.
				rep, err := audit.Audit(ctx, audit.Options{Method: audit.MethodBPF, BPFFS: tt.bpffs})
				assert.Nil(t, rep)
				return err
			}, tt.want)
		})
	}
	t.Run("audit cancelled", func(t *testing.T) {
		leaves(t, func() error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			_, err := audit.Audit(ctx, audit.Options{Method: audit.MethodBPF, BPFFS: l.BPFFS, Progress: func(p audit.Progress) {
				if p.Stage == audit.Reading {
					cancel()
				}
			}})
			return err
		}, context.Canceled.Error())
	})
	t.Run("audit invalid method", func(t *testing.T) {
		leaves(t, func() error {
			_, err := audit.Audit(ctx, audit.Options{Method: audit.MethodPidfd + 1, BPFFS: l.BPFFS})
			return err
		}, "unknown")
	})
	for _, tt := range []struct {
		name string
		pid  int
		ch   audit.Change
		want string
	}{
		{"apply invalid config", h.PID, audit.Change{Config: keepalive.Config{Idle: -time.Second}, Fields: audit.FieldIdle, Method: audit.MethodBPF}, "Idle"},
		{"apply no field", h.PID, audit.Change{Method: audit.MethodBPF}, "names no field"},
		{"apply no process", 999999999, audit.Change{Config: keepalive.Config{Idle: 44 * time.Second}, Fields: audit.FieldIdle, Method: audit.MethodBPF}, "process 999999999"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := socketValues(t, h.PID)
			leaves(t, func() error {
				_, err := audit.Apply(ctx, tt.pid, audit.Filter{}, tt.ch)
				return err
			}, tt.want)
			assert.Equal(t, before, socketValues(t, h.PID), "nothing changed")
		})
	}
	t.Run("no CAP_BPF", func(t *testing.T) {
		before := socketValues(t, h.PID)
		leaves(t, func() error {
			r := runAuditor(t, auditorSpec{Method: audit.MethodBPF, BPFFS: l.BPFFS, AuditPID: h.PID, ApplyPIDs: []int{h.PID}, Change: "idle=45s"}, bpfCaps...)
			assert.Contains(t, r.ApplyErrs[0], "lacks CAP_BPF", "apply")
			return errors.New(r.PIDAuditErr)
		}, "lacks CAP_BPF")
		assert.Equal(t, before, socketValues(t, h.PID), "nothing changed")
	})
}

// freed reports whether every object of o is gone from the kernel.
func freed(t *testing.T, o bpfsock.Objects) bool {
	t.Helper()
	gone := func(err error) bool {
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("looking an object up by id: %v", err)
		}
		return err != nil
	}
	for _, id := range o.Programs {
		p, err := ebpf.NewProgramFromID(id)
		if !gone(err) {
			p.Close()
			return false
		}
	}
	for _, id := range o.Maps {
		m, err := ebpf.NewMapFromID(id)
		if !gone(err) {
			m.Close()
			return false
		}
	}
	for _, id := range o.Links {
		k, err := link.NewFromID(id)
		if !gone(err) {
			k.Close()
			return false
		}
	}
	return true
}
