package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/integration/replicate"
	"github.com/keepalive-go/keepalive/internal/netlab"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// The replication scenario, compressed from hours to seconds: a firewall
// that forgets a flow after replConntrack of silence, idle periods twice as
// long, and a stream whose keepalive probes every second from one second
// of silence and gives up four seconds after it last heard from the
// server.
const (
	replConntrack = 3 * time.Second
	replIdle      = 2 * replConntrack
	// replStatusInterval keeps PostgreSQL's standby status updates out of
	// the idle periods, so that only keepalive keeps the flow known to the
	// firewall.
	replStatusInterval = 30 * time.Second
	// replControlWait is how long a row is given to reach the stream
	// without keepalive after the idle period; the stream with keepalive
	// gets it in milliseconds.
	replControlWait = 3 * time.Second
	replWait        = 15 * time.Second
)

// replKeepalive is the stream's keepalive, as libpq options: what the
// PostgreSQL test passes through ParsePostgres, and the Config the MariaDB
// test dials with.
const replKeepalive = "keepalives=1 keepalives_idle=1 keepalives_interval=1 keepalives_count=3 tcp_user_timeout=4000"

// replDB is the database a replication scenario streams from.
type replDB interface {
	// insert commits one transaction that inserts the rows with these ids
	// into the stream's table (control: the control stream's).
	insert(ctx context.Context, control bool, ids ...int) error
	// stream returns a stream of the table through dial, handing its
	// transactions and events to h.
	stream(dial func(ctx context.Context, network, address string) (net.Conn, error), control bool, h *replHarness) interface{ Run(context.Context) error }
}

// TestReplicatePostgres streams PostgreSQL logical replication (pgoutput
// over pglogrepl and pgconn) through a firewall that forgets idle flows;
// see replicationScenario.
func TestReplicatePostgres(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: replConntrack, Tag: "karpg"})
	pg, err := testserver.InitPostgres(tmpRoot, "postgres-repl-")
	if u := (testserver.Unavailable{}); errors.As(err, &u) {
		testserver.Skip(t, u.Reason)
	}
	require.NoError(t, err)
	require.NoError(t, pg.Trust(lab.ClientAddr().String()+"/32"))
	require.NoError(t, pg.Configure("wal_level = logical"))
	// The test's own connections use the Unix-domain socket, which is
	// reached from the host's network namespace and crosses no firewall.
	local := fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres", pg.Dir)
	require.NoError(t, pg.Start(lab.ServerAddr().String(), 5432, testserver.NetnsSpawn(t, lab.Server), t.Cleanup, pgReady(local)))

	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, local)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close(context.Background()) })
	// A server process whose client vanished holds up a fast shutdown
	// until wal_sender_timeout: end them all first.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		_, err := conn.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
		assert.NoError(t, err, "ending the replication connections")
	})
	for _, q := range []string{
		"CREATE TABLE stream (id int PRIMARY KEY, at timestamptz DEFAULT now())",
		"CREATE TABLE control (id int PRIMARY KEY)",
		"CREATE PUBLICATION stream FOR TABLE stream",
		"CREATE PUBLICATION control FOR TABLE control",
	} {
		_, err := conn.Exec(ctx, q)
		require.NoError(t, err, q)
	}
	db := &pgReplDB{t: t, conn: conn, server: lab.ServerAddr()}
	replicationScenario(t, lab, db)
}

// pgReplDB is the PostgreSQL server of TestReplicatePostgres.
type pgReplDB struct {
	t      *testing.T
	mu     sync.Mutex
	conn   *pgx.Conn
	server netip.Addr
}

func (db *pgReplDB) insert(ctx context.Context, control bool, ids ...int) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	table := "stream"
	if control {
		table = "control"
	}
	var values []string
	for _, id := range ids {
		values = append(values, fmt.Sprintf("(%d)", id))
	}
	_, err := db.conn.Exec(ctx, fmt.Sprintf("INSERT INTO %s (id) VALUES %s", table, strings.Join(values, ",")))
	return err
}

func (db *pgReplDB) stream(dial func(ctx context.Context, network, address string) (net.Conn, error), control bool, h *replHarness) interface{ Run(context.Context) error } {
	name := "stream"
	if control {
		name = "control"
	}
	// The keepalive stream's Config comes from libpq's options in its
	// connection string; the control stream dials with pgconn's own
	// dialer, as pgx does without a DialFunc.
	cfg, rest, err := keepalive.ParsePostgres(fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable %s", db.server, replKeepalive))
	require.NoError(db.t, err)
	connConfig, err := pgconn.ParseConfig(rest)
	require.NoError(db.t, err)
	if dial == nil {
		dial = connConfig.DialFunc
	} else {
		require.Equal(db.t, h.cfg, cfg, "the Config from the connection string")
	}
	connConfig.DialFunc = h.labDial(dial)
	return &replicate.Postgres{
		Config:         connConfig,
		Slot:           name,
		Publication:    name,
		StatusInterval: replStatusInterval,
		TakeOver:       true,
		Handle:         h.handle,
		OnEvent:        h.event,
	}
}

// TestReplicateMariaDB streams the MariaDB binary log (go-mysql's
// BinlogSyncer, whose Dialer is the library's) through a firewall that
// forgets idle flows; see replicationScenario.
func TestReplicateMariaDB(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: replConntrack, Tag: "karmy"})
	m, err := testserver.InitMariaDB(tmpRoot, "mariadb-repl")
	if u := (testserver.Unavailable{}); errors.As(err, &u) {
		testserver.Skip(t, u.Reason)
	}
	require.NoError(t, err)
	// The test's own connections use the Unix-domain socket.
	local := mysql.NewConfig()
	local.User, local.Net, local.Addr = "root", "unix", m.Socket()
	require.NoError(t, m.Start(lab.ServerAddr().String(), 3306, testserver.NetnsSpawn(t, lab.Server), t.Cleanup,
		func(ctx context.Context) error { return mariaPing(ctx, local) },
		"--log-bin="+filepath.Join(m.Dir, "binlog"), "--binlog-format=ROW", "--binlog-row-metadata=FULL", "--server-id=1"))

	connector, err := mysql.NewConnector(local)
	require.NoError(t, err)
	sqlDB := sql.OpenDB(connector)
	t.Cleanup(func() { sqlDB.Close() })
	sqlDB.SetMaxOpenConns(1)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	for _, q := range []string{
		"CREATE DATABASE repl",
		"CREATE TABLE repl.stream (id int PRIMARY KEY) ENGINE=InnoDB",
		"CREATE TABLE repl.control (id int PRIMARY KEY) ENGINE=InnoDB",
		"CREATE USER repl@'%'",
		"GRANT REPLICATION SLAVE, BINLOG MONITOR, CONNECTION ADMIN ON *.* TO repl@'%'",
	} {
		_, err := sqlDB.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	db := &mariaReplDB{t: t, db: sqlDB, addr: netip.AddrPortFrom(lab.ServerAddr(), 3306)}
	replicationScenario(t, lab, db)
}

// mariaReplDB is the MariaDB server of TestReplicateMariaDB.
type mariaReplDB struct {
	t    *testing.T
	db   *sql.DB
	addr netip.AddrPort
}

func (db *mariaReplDB) insert(ctx context.Context, control bool, ids ...int) error {
	table := "repl.stream"
	if control {
		table = "repl.control"
	}
	var values []string
	for _, id := range ids {
		values = append(values, fmt.Sprintf("(%d)", id))
	}
	_, err := db.db.ExecContext(ctx, fmt.Sprintf("INSERT INTO %s (id) VALUES %s", table, strings.Join(values, ",")))
	return err
}

func (db *mariaReplDB) stream(dial func(ctx context.Context, network, address string) (net.Conn, error), control bool, h *replHarness) interface{ Run(context.Context) error } {
	serverID := uint32(101)
	if control {
		serverID = 102
	}
	if dial == nil {
		// go-mysql's own dialer, as BinlogSyncer uses without a Dialer.
		dial = (&net.Dialer{}).DialContext
	}
	return &replicate.MariaDB{
		Addr:     db.addr.String(),
		User:     "repl",
		ServerID: serverID,
		Dial:     h.labDial(dial),
		Handle:   h.handle,
		OnEvent:  h.event,
	}
}

// replicationScenario runs a stream through lab's firewall, which forgets a
// flow after replConntrack of silence, with a Config from replKeepalive,
// and a control stream without the library at the same time. It proves:
//
//   - the stream's socket carries the Config;
//   - rows inserted before an idle period of replIdle arrive; after it, a
//     new row arrives on the same connection, while the control stream,
//     whose flow the firewall forgot, does not get its row;
//   - when the firewall forgets every flow at once (a nightly clean-up),
//     the stream notices within the Config's DetectionTime (with the
//     margin of the root module's tests: 1.15 times plus 200 ms), with
//     ETIMEDOUT, reconnects, and every row inserted before, during and
//     after the outage arrives, none twice.
//
// The stream hands a transaction to its handler and records its end as the
// position to resume from in one step, and resumes from there: a
// reconnection delivers nothing twice, so any duplicate fails the test.
func replicationScenario(t *testing.T, lab *netlab.Lab, db replDB) {
	cfg, _, err := keepalive.ParsePostgres(replKeepalive)
	require.NoError(t, err)
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	bound := cfg.DetectionTime(sys)

	h := newReplHarness(t, lab, cfg, "stream")
	ctl := newReplHarness(t, lab, cfg, "control")
	ctx, cancel := context.WithCancel(context.Background())
	ctlCtx, ctlCancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	d := &keepalive.Dialer{Config: cfg}
	for _, s := range []struct {
		h   *replHarness
		ctx context.Context
		run interface{ Run(context.Context) error }
	}{
		{h, ctx, db.stream(d.DialContext, false, h)},
		{ctl, ctlCtx, db.stream(nil, true, ctl)},
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.h.setDone(s.run.Run(s.ctx))
		}()
	}
	first := h.waitEvent(replicate.Connected, time.Time{})
	ctlFirst := ctl.waitEvent(replicate.Connected, time.Time{})
	assert.Equal(t, want(cfg), h.socket(t, first), "the stream's socket")
	ctlSocket := ctl.socket(t, ctlFirst)

	ictx, icancel := context.WithTimeout(ctx, 2*time.Minute)
	defer icancel()
	insert := func(control bool, ids ...int) {
		t.Helper()
		require.NoError(t, db.insert(ictx, control, ids...))
	}
	var ids []int
	next := func(n int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = len(ids) + 1
			ids = append(ids, s[i])
		}
		return s
	}

	// Before: single-row transactions and one of five rows.
	for _, id := range next(5) {
		insert(false, id)
	}
	insert(false, next(5)...)
	insert(true, 1)
	h.waitRows(ids)
	ctl.waitRows([]int{1})

	// Idle for twice the firewall's timeout.
	time.Sleep(replIdle)
	insert(false, next(1)...)
	insert(true, 2)
	sent := time.Now()
	h.waitRows(ids)
	t.Logf("after %v idle: the row arrived in %v", replIdle, time.Since(sent).Round(time.Millisecond))
	assert.Empty(t, h.events(replicate.Lost), "the stream lost its connection while idle")
	assert.Len(t, h.events(replicate.Connected), 1, "connections")
	time.Sleep(replControlWait - time.Since(sent))
	assert.NotContains(t, ctl.received(), 2, "the control stream, without keepalive, got a row after %v idle", replIdle)
	ctlCancel()
	t.Logf("control stream without keepalive: row after %v idle not received within %v; socket %+v", replIdle, replControlWait, ctlSocket)

	// The clean-up: the firewall forgets every flow.
	time.Sleep(time.Second)
	cut := time.Now()
	lab.CutFlows()
	during := next(5)
	for _, id := range during {
		insert(false, id)
	}
	lost := h.waitEvent(replicate.Lost, cut)
	noticed := lost.Time.Sub(cut)
	limit := bound + bound*15/100 + 200*time.Millisecond
	t.Logf("dead flow noticed %v after the cut (bound %v, limit %v): %v", noticed.Round(time.Millisecond), bound, limit, lost.Err)
	assert.LessOrEqual(t, noticed, limit, "time to notice the dead flow")
	// go-mysql keeps only the text of the read's error.
	assert.True(t, errors.Is(lost.Err, syscall.ETIMEDOUT) || strings.Contains(lost.Err.Error(), syscall.ETIMEDOUT.Error()),
		"the stream sees ETIMEDOUT: %v", lost.Err)
	again := h.waitEvent(replicate.Connected, lost.Time)
	h.waitRows(ids)
	t.Logf("reconnected %v after the cut from %v, resuming at %v; the %d rows inserted during the outage arrived %v after the cut",
		again.Time.Sub(cut).Round(time.Millisecond), again.Local, again.Position, len(during), time.Since(cut).Round(time.Millisecond))
	for _, e := range h.events(replicate.TookOver) {
		t.Logf("ended the server process %d that held the slot", e.PID)
	}
	for _, e := range h.events(replicate.ConnectFailed) {
		t.Logf("a reconnection failed: %v", e.Err)
	}

	// After.
	insert(false, next(5)...)
	h.waitRows(ids)
	got := h.received()
	slices.Sort(got)
	dups := len(got) - len(slices.Compact(slices.Clone(got)))
	t.Logf("rows: %d inserted, %d received, %d duplicates; connections %d (first from %v)", len(ids), len(got), dups, len(h.events(replicate.Connected)), first.Local)
	assert.Equal(t, ids, slices.Compact(got), "every row, once")
	assert.Zero(t, dups, "duplicates")
	assert.Equal(t, want(cfg), h.socket(t, again), "the new connection's socket")
}

// replHarness collects what a stream hands over.
type replHarness struct {
	t     *testing.T
	lab   *netlab.Lab
	cfg   keepalive.Config
	table string // the table whose rows count: stream or control

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	rows    []int
	evs     []replicate.Event
	conns   []net.Conn
	err     error // Run's result
	done    bool
}

func newReplHarness(t *testing.T, lab *netlab.Lab, cfg keepalive.Config, table string) *replHarness {
	return &replHarness{t: t, lab: lab, cfg: cfg, table: table, changed: make(chan struct{})}
}

// labDial returns dial run in the lab's client namespace, recording each
// connection.
func (h *replHarness) labDial(dial func(ctx context.Context, network, address string) (net.Conn, error)) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		err := h.lab.Client(func() error {
			var err error
			c, err = dial(ctx, network, address)
			return err
		})
		if err != nil {
			return nil, err
		}
		h.update(func() { h.conns = append(h.conns, c) })
		return c, nil
	}
}

func (h *replHarness) update(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
	close(h.changed)
	h.changed = make(chan struct{})
}

func (h *replHarness) handle(txn replicate.Txn) error {
	var ids []int
	for _, c := range txn.Changes {
		if c.Op != "insert" || c.Row["id"] == nil {
			continue
		}
		if !strings.HasSuffix(c.Table, "."+h.table) {
			continue
		}
		id, err := strconv.Atoi(*c.Row["id"])
		if err != nil {
			return err
		}
		ids = append(ids, id)
	}
	h.update(func() { h.rows = append(h.rows, ids...) })
	return nil
}

func (h *replHarness) event(e replicate.Event) {
	h.update(func() { h.evs = append(h.evs, e) })
}

func (h *replHarness) setDone(err error) {
	h.update(func() { h.err, h.done = err, true })
}

// wait waits until cond, called with h locked, is true, or fails the test
// after replWait or when the stream has ended.
func (h *replHarness) wait(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.After(replWait)
	for {
		h.mu.Lock()
		ok, done, err, ch := cond(), h.done, h.err, h.changed
		h.mu.Unlock()
		if ok {
			return
		}
		if done {
			h.t.Fatalf("waiting for %s: the stream ended: %v", what, err)
		}
		select {
		case <-ch:
		case <-deadline:
			h.t.Fatalf("no %s within %v", what, replWait)
		}
	}
}

// waitEvent waits for the first event of kind after t.
func (h *replHarness) waitEvent(kind replicate.EventKind, t time.Time) replicate.Event {
	h.t.Helper()
	var e replicate.Event
	h.wait(kind.String()+" event", func() bool {
		for _, ev := range h.evs {
			if ev.Kind == kind && ev.Time.After(t) {
				e = ev
				return true
			}
		}
		return false
	})
	return e
}

// waitRows waits until every one of ids has arrived.
func (h *replHarness) waitRows(ids []int) {
	h.t.Helper()
	h.wait(fmt.Sprintf("rows %v", ids), func() bool {
		for _, id := range ids {
			if !slices.Contains(h.rows, id) {
				return false
			}
		}
		return true
	})
}

func (h *replHarness) received() []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.rows)
}

func (h *replHarness) events(kind replicate.EventKind) []replicate.Event {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []replicate.Event
	for _, e := range h.evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

// socket reads the options of the connection a Connected event reports.
func (h *replHarness) socket(t *testing.T, e replicate.Event) kernel {
	t.Helper()
	require.NotNil(t, e.Local, "the stream's local address")
	h.mu.Lock()
	conns := slices.Clone(h.conns)
	h.mu.Unlock()
	for _, c := range conns {
		if c.LocalAddr().String() == e.Local.String() {
			return readKernel(t, c)
		}
	}
	require.Failf(t, "no such connection", "none of the %d connections dialed is from %v", len(conns), e.Local)
	return kernel{}
}
