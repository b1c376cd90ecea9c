package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/policytest"
)

// policyLab is a policytest.Lab that audits.
type policyLab struct {
	*policytest.Lab
	t *testing.T
}

func newPolicyLab(t *testing.T) *policyLab {
	return &policyLab{policytest.New(t), t}
}

// audit audits every process by method m, with the lab's policies, and
// checks that it leaves no descriptor open and nothing pinned.
func (l *policyLab) audit(m audit.Method) *audit.Report {
	l.t.Helper()
	fds, pins := descriptors(l.t), pinned(l.t, l.BPFFS)
	rep, err := audit.Audit(context.Background(), audit.Options{Method: m, BPFFS: l.BPFFS})
	require.NoError(l.t, err)
	require.NoError(l.t, rep.PoliciesErr)
	assert.Equal(l.t, fds, descriptors(l.t), "descriptors by kind before and after the audit")
	assert.Equal(l.t, pins, pinned(l.t, l.BPFFS), "bpffs before and after the audit")
	return rep
}

// pinned lists what is pinned under dir.
func pinned(t *testing.T, dir string) []string {
	t.Helper()
	var pins []string
	require.NoError(t, filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		pins = append(pins, p)
		return err
	}))
	return pins
}

// connsOf returns the connections of rep that process pid holds.
func connsOf(rep *audit.Report, pid int) []audit.Conn {
	var cs []audit.Conn
	for _, c := range rep.Conns {
		if c.PID == pid {
			cs = append(cs, c)
		}
	}
	return cs
}

// coverage returns the coverage of the policy on the cgroup whose id is
// id, and whether rep has one.
func coverage(rep *audit.Report, id uint64) (audit.Coverage, bool) {
	i := slices.IndexFunc(rep.Policies, func(c audit.Coverage) bool { return c.Policy.CgroupID == id })
	if i < 0 {
		return audit.Coverage{}, false
	}
	return rep.Policies[i], true
}

// TestAuditPolicy puts policies on cgroups the test makes, whose
// processes hold connections made before and after, and checks that each
// connection names the policy that set it, and how, by either method;
// that one no policy set names none; that each policy's coverage counts
// its connections; and that a connection set by a policy since removed,
// or since replaced by one that leaves it out, says so. Every value is
// the one getsockopt reads on the socket.
func TestAuditPolicy(t *testing.T) {
	l := newPolicyLab(t)
	cgA, cgB := l.Cgroup(), l.Cgroup()
	pa := keepalive.Config{Idle: 61 * time.Second, Interval: 6 * time.Second, Count: 6, UserTimeout: 66 * time.Second}
	pb := keepalive.Config{Idle: 62 * time.Second}
	before := startHoldWith(t, testproc.Opts{Cgroup: cgA}, 1, "off", nil)
	outside := startHold(t, 1, "off", false, nil)
	polA := l.Enforce(cgA, pa, enforce.Filter{})
	after := startHoldWith(t, testproc.Opts{Cgroup: cgA}, 1, "off", nil)
	inB := startHoldWith(t, testproc.Opts{Cgroup: cgB}, 1, "off", nil)
	polB := l.Enforce(cgB, pb, enforce.Filter{})
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	withB := valuesOfConfig(keepalive.Config{Idle: pb.Idle, Interval: sys.Interval, Count: sys.Count})

	// check checks the connections of h against the policy p that set
	// them, in force or not, and against getsockopt.
	check := func(t *testing.T, m audit.Method, rep *audit.Report, h *helper, p enforce.Policy, inForce bool, path string, hows ...audit.How) {
		t.Helper()
		cs := connsOf(rep, h.PID)
		require.Len(t, cs, 2, "pid %d: both ends", h.PID)
		var got []audit.How
		for _, c := range cs {
			assert.Equal(t, readFrom(t, h.PID, c.FD), valuesOf(c), "pid %d fd %d: audit's values; want getsockopt's", h.PID, c.FD)
			require.NotNil(t, c.SetBy, "pid %d fd %d: set by the policy on %s", h.PID, c.FD, p.Cgroup)
			got = append(got, c.SetBy.How)
			assert.Equal(t, audit.SetBy{Cgroup: path, CgroupID: p.CgroupID, PolicyID: p.ID, How: c.SetBy.How, Set: audit.FieldKeepAlive | fieldsOf(p.Config), InForce: inForce},
				*c.SetBy, "pid %d fd %d", h.PID, c.FD)
			if m == audit.MethodBPF {
				assert.Equal(t, p.CgroupID, c.Cgroup, "pid %d fd %d: the socket's cgroup", h.PID, c.FD)
			} else {
				assert.Zero(t, c.Cgroup, "pid %d fd %d: only the BPF iterator reads the socket's cgroup", h.PID, c.FD)
			}
		}
		assert.ElementsMatch(t, hows, got, "pid %d: how the policy reached each end", h.PID)
	}

	t.Run("in force", func(t *testing.T) {
		forMethods(t, func(t *testing.T, m audit.Method) {
			rep := l.audit(m)
			check(t, m, rep, before, polA, true, cgA, audit.Existing, audit.Existing)
			check(t, m, rep, after, polA, true, cgA, audit.Dialled, audit.Accepted)
			check(t, m, rep, inB, polB, true, cgB, audit.Existing, audit.Existing)
			for _, c := range connsOf(rep, outside.PID) {
				assert.Nil(t, c.SetBy, "fd %d: no policy set it", c.FD)
				assert.Equal(t, readFrom(t, outside.PID, c.FD), valuesOf(c), "fd %d", c.FD)
			}
			require.Len(t, rep.Policies, 2)
			a, ok := coverage(rep, polA.CgroupID)
			require.True(t, ok)
			assert.Equal(t, enforce.Counts{Dialled: 1, Accepted: 1, Existing: 2}, a.Policy.Counts)
			assert.Equal(t, 4, a.Carrying)
			b, ok := coverage(rep, polB.CgroupID)
			require.True(t, ok)
			assert.Equal(t, enforce.Counts{Existing: 2}, b.Policy.Counts)
			assert.Equal(t, 2, b.Carrying)
			if m == audit.MethodBPF {
				assert.Equal(t, 4, a.Connections, "the connections of cgroup A")
				assert.Equal(t, 2, b.Connections, "the connections of cgroup B")
			}
		})
	})

	// A removed: its connections keep its values and its record, which
	// cgroup B's policy keeps the map of, which names A by its id, found
	// by its file handle.
	_, err = enforce.Remove(context.Background(), l.BPFFS, cgA)
	require.NoError(t, err)
	// B replaced by a policy of other flows, which leaves its
	// connections with the values and the record of the one before.
	polB2 := l.Enforce(cgB, keepalive.Config{Idle: 63 * time.Second}, enforce.Filter{Ports: []uint16{1}})
	t.Run("ended", func(t *testing.T) {
		forMethods(t, func(t *testing.T, m audit.Method) {
			rep := l.audit(m)
			check(t, m, rep, before, polA, false, cgA, audit.Existing, audit.Existing)
			check(t, m, rep, after, polA, false, cgA, audit.Dialled, audit.Accepted)
			check(t, m, rep, inB, polB, false, cgB, audit.Existing, audit.Existing)
			for _, c := range connsOf(rep, after.PID) {
				assert.Equal(t, valuesOfConfig(pa), valuesOf(c), "fd %d keeps the removed policy's values", c.FD)
			}
			for _, c := range connsOf(rep, inB.PID) {
				assert.Equal(t, withB, valuesOf(c), "fd %d keeps the replaced policy's values", c.FD)
			}
			require.Len(t, rep.Policies, 1)
			b, ok := coverage(rep, polB2.CgroupID)
			require.True(t, ok)
			assert.Equal(t, polB2.ID, b.Policy.ID)
			assert.Zero(t, b.Carrying)
			if m == audit.MethodBPF {
				assert.Equal(t, 2, b.Connections, "its cgroup's connections, which it leaves out")
			}
		})
	})
}

// fieldsOf is the fields c sets as a policy: those not zero.
func fieldsOf(c keepalive.Config) audit.Fields {
	var f audit.Fields
	for i, set := range []bool{c.Idle != 0, c.Interval != 0, c.Count != 0, c.UserTimeout != 0} {
		if set {
			f |= audit.FieldIdle << i
		}
	}
	return f
}
