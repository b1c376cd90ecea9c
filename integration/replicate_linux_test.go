package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
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
	// pair returns a stream of the table on the slot (or server ID) of
	// twoInstances, dialed through the lab with a keepalive.Dialer; with
	// takeOver, one that asks to take the slot over.
	pair(h *replHarness, takeOver bool) interface{ Run(context.Context) error }
	// starts counts, in the server's log, what each stream of the pair
	// ending another's leaves there: PostgreSQL's terminated server
	// processes, MariaDB's binary log dumps started for the pair's server
	// ID (each ends the one before it).
	starts() int
}

// TestReplicatePostgres streams PostgreSQL logical replication (pgoutput
// over pglogrepl and pgconn) through a firewall that forgets idle flows;
// see replicationScenario.
func TestReplicatePostgres(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: replConntrack, Tag: "karpg"})
	pg, err := initPostgres("postgres-repl-")
	if u := (errUnavailable{}); errors.As(err, &u) {
		unavailable(t, u.reason)
	}
	require.NoError(t, err)
	require.NoError(t, pg.trust(lab.ClientAddr().String()+"/32"))
	require.NoError(t, pg.configure("wal_level = logical"))
	// The test's own connections use the Unix-domain socket, which is
	// reached from the host's network namespace and crosses no firewall.
	local := fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres", pg.dir)
	require.NoError(t, pg.start(lab.ServerAddr().String(), 5432, netnsSpawn(t, lab.Server), t.Cleanup, pgReady(local)))

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
	db := &pgReplDB{t: t, conn: conn, server: lab.ServerAddr(), log: pg.dir + ".log"}
	replicationScenario(t, lab, db)
	t.Run("two instances", func(t *testing.T) { twoInstances(t, lab, db) })
}

// pgReplDB is the PostgreSQL server of TestReplicatePostgres.
type pgReplDB struct {
	t      *testing.T
	mu     sync.Mutex
	conn   *pgx.Conn
	server netip.Addr
	log    string // the server's log
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
	return db.postgres(dial, name, name, h)
}

func (db *pgReplDB) pair(h *replHarness, takeOver bool) interface{ Run(context.Context) error } {
	p := db.postgres((&keepalive.Dialer{Config: h.cfg}).DialContext, "pair", "stream", h)
	p.TakeOver = takeOver
	return p
}

// starts counts the server processes ended by pg_terminate_backend.
func (db *pgReplDB) starts() int {
	return countInFile(db.t, db.log, "terminating connection due to administrator command")
}

// countInFile counts the lines of the file at path that contain s.
func countInFile(t *testing.T, path, s string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// postgres returns a stream of slot through dial (nil: pgconn's own), in
// the lab's client namespace.
func (db *pgReplDB) postgres(dial func(ctx context.Context, network, address string) (net.Conn, error), slot, publication string, h *replHarness) *replicate.Postgres {
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
		Slot:           slot,
		Publication:    publication,
		StatusInterval: replStatusInterval,
		Handle:         h.handle,
		OnEvent:        h.event,
	}
}

// configure appends settings to the cluster's postgresql.conf.
func (pg *pgCluster) configure(lines ...string) error {
	f, err := os.OpenFile(filepath.Join(pg.data, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, strings.Join(lines, "\n"))
	return errors.Join(err, f.Close())
}

// TestReplicateMariaDB streams the MariaDB binary log (go-mysql's
// BinlogSyncer, whose Dialer is the library's) through a firewall that
// forgets idle flows; see replicationScenario.
func TestReplicateMariaDB(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: replConntrack, Tag: "karmy"})
	m, err := initMariaDB("mariadb-repl")
	if u := (errUnavailable{}); errors.As(err, &u) {
		unavailable(t, u.reason)
	}
	require.NoError(t, err)
	// The test's own connections use the Unix-domain socket.
	local := mysql.NewConfig()
	local.User, local.Net, local.Addr = "root", "unix", m.socket()
	require.NoError(t, m.start(lab.ServerAddr().String(), 3306, netnsSpawn(t, lab.Server), t.Cleanup,
		func(ctx context.Context) error { return mariaPing(ctx, local) },
		"--log-bin="+filepath.Join(m.dir, "binlog"), "--binlog-format=ROW", "--binlog-row-metadata=FULL", "--server-id=1"))

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
		"GRANT REPLICATION SLAVE, REPLICATION MASTER ADMIN, BINLOG MONITOR ON *.* TO repl@'%'",
		// Without REPLICATION MASTER ADMIN a stream cannot tell whether
		// another streams with its server ID.
		"CREATE USER blind@'%'",
		"GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO blind@'%'",
	} {
		_, err := sqlDB.ExecContext(ctx, q)
		require.NoError(t, err, q)
	}
	db := &mariaReplDB{t: t, db: sqlDB, addr: netip.AddrPortFrom(lab.ServerAddr(), 3306), log: m.dir + ".log"}
	replicationScenario(t, lab, db)
	t.Run("two instances", func(t *testing.T) { twoInstances(t, lab, db) })
	t.Run("no REPLICATION MASTER ADMIN", func(t *testing.T) {
		h := newReplHarness(t, lab, keepalive.Config{}, "stream")
		s := db.mariaDB((&keepalive.Dialer{}).DialContext, mariaPairID, h)
		s.User = "blind"
		ctx, cancel := context.WithTimeout(context.Background(), replWait)
		defer cancel()
		err := s.Run(ctx)
		require.Error(t, err)
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "Run waited instead of failing")
		assert.ErrorContains(t, err, "user blind cannot list the server's replicas, to tell whether another one streams with server_id 103")
		assert.ErrorContains(t, err, "REPLICATION MASTER ADMIN")
		assert.Empty(t, h.events(replicate.Connected), "it streamed")
	})
}

// mariaPairID is the server ID of twoInstances' MariaDB streams.
const mariaPairID = 103

// mariaReplDB is the MariaDB server of TestReplicateMariaDB.
type mariaReplDB struct {
	t    *testing.T
	db   *sql.DB
	addr netip.AddrPort
	log  string // the server's log
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
	return db.mariaDB(dial, serverID, h)
}

func (db *mariaReplDB) pair(h *replHarness, takeOver bool) interface{ Run(context.Context) error } {
	m := db.mariaDB((&keepalive.Dialer{Config: h.cfg}).DialContext, mariaPairID, h)
	m.TakeOver = takeOver
	return m
}

// starts counts the binary log dumps started for mariaPairID.
func (db *mariaReplDB) starts() int {
	return countInFile(db.t, db.log, fmt.Sprintf("Start binlog_dump to slave_server(%d)", mariaPairID))
}

// mariaDB returns a stream with serverID through dial, in the lab's
// client namespace.
func (db *mariaReplDB) mariaDB(dial func(ctx context.Context, network, address string) (net.Conn, error), serverID uint32, h *replHarness) *replicate.MariaDB {
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
	bound, err := cfg.DetectionTime()
	require.NoError(t, err)

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
	// The server still holds the dead flow's end of the stream: the
	// stream ends it as its own, and nothing else.
	assert.Empty(t, h.events(replicate.Busy), "the stream waited for a holder")
	tookOver := h.events(replicate.TookOver)
	for _, e := range tookOver {
		t.Logf("ended %v, which held the stream", e.Holder)
		assert.True(t, ownHolder(first, e), "the stream ended %v, not its own earlier connection", e.Holder)
	}
	if first.PID != 0 {
		assert.Len(t, tookOver, 1, "PostgreSQL keeps the dead connection's server process: the stream ends it")
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

// ownHolder reports whether the holder a TookOver event names is the
// stream's own earlier connection: for PostgreSQL the server process of its
// first connection (first.PID), for MariaDB a stream registered by this
// process.
func ownHolder(first, e replicate.Event) bool {
	if first.PID != 0 {
		return e.PID == first.PID
	}
	host, _ := os.Hostname()
	return strings.HasPrefix(e.Holder.Client, fmt.Sprintf("%s/%d/", host, os.Getpid()))
}

// twoInstances runs two streams on one slot (or server ID) and proves they
// do not fight:
//
//   - a second stream started while the first streams reports the first
//     as Busy and waits: for several looks it neither streams nor ends
//     anything (the server's log shows no process ended and no dump
//     started), and the first delivers every row, on its one connection;
//   - when the first stops, the second starts within a few looks and
//     delivers what follows (for PostgreSQL, exactly the rows the first
//     did not: the first reported its position as it stopped);
//   - a third that asks to take over ends the second (once, unless the
//     second reconnects before the third starts); the second reports the
//     third as Busy and waits, and the third delivers.
func twoInstances(t *testing.T, lab *netlab.Lab, db replDB) {
	cfg, _, err := keepalive.ParsePostgres(replKeepalive)
	require.NoError(t, err)
	type instance struct {
		h      *replHarness
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func(table string, takeOver bool) *instance {
		in := &instance{h: newReplHarness(t, lab, cfg, table), done: make(chan struct{})}
		var ctx context.Context
		ctx, in.cancel = context.WithCancel(context.Background())
		s := db.pair(in.h, takeOver)
		go func() {
			defer close(in.done)
			in.h.setDone(s.Run(ctx))
		}()
		t.Cleanup(func() {
			in.cancel()
			<-in.done
		})
		return in
	}
	stop := func(in *instance) {
		in.cancel()
		<-in.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id := 1000
	insert := func(n int) []int {
		t.Helper()
		var ids []int
		for range n {
			ids = append(ids, id)
			id++
		}
		require.NoError(t, db.insert(ctx, false, ids...))
		return ids
	}
	// Only the rows of this scenario count.
	mine := func(rows []int) []int {
		return slices.DeleteFunc(rows, func(r int) bool { return r < 1000 })
	}

	a := start("stream", false)
	aConn := a.h.waitEvent(replicate.Connected, time.Time{})
	first := insert(5)
	a.h.waitRows(first)
	before := db.starts()

	b := start("stream", false)
	busy := b.h.waitEvent(replicate.Busy, time.Time{})
	t.Logf("the second stream waits: %v", busy.Holder)
	if aConn.PID != 0 {
		assert.Equal(t, aConn.PID, busy.PID, "the holder the second stream reports")
	} else {
		assert.True(t, ownHolder(aConn, busy), "the holder the second stream reports: %v", busy.Holder)
	}
	// Three looks of the second, rows all along.
	var during []int
	for range 6 {
		during = append(during, insert(2)...)
		time.Sleep(busyLooks / 2)
	}
	a.h.waitRows(during)
	fights := db.starts() - before
	t.Logf("together for %v: %d server processes ended or dumps started; first stream %d rows, %d connections, %d lost; second %d rows, %d connections",
		3*busyLooks, fights, len(mine(a.h.received())), len(a.h.events(replicate.Connected)), len(a.h.events(replicate.Lost)),
		len(mine(b.h.received())), len(b.h.events(replicate.Connected)))
	assert.Zero(t, fights, "streams ended by another, in the server's log")
	assert.Empty(t, a.h.events(replicate.Lost), "the first stream lost its connection")
	assert.Len(t, a.h.events(replicate.Connected), 1, "the first stream's connections")
	assert.Empty(t, b.h.events(replicate.Connected), "the second stream streamed")
	assert.Empty(t, b.h.received(), "rows the second stream delivered")
	assert.Len(t, b.h.events(replicate.Busy), 1, "Busy events: one per holder")
	for _, h := range []*replHarness{a.h, b.h} {
		assert.Empty(t, h.events(replicate.TookOver), "a stream took over")
	}
	assert.Equal(t, append(slices.Clone(first), during...), mine(a.h.received()), "the first stream's rows")

	// The first stops: the second streams.
	stopped := time.Now()
	stop(a)
	bConn := b.h.waitEvent(replicate.Connected, time.Time{})
	t.Logf("the first stream stopped; the second streams %v later", bConn.Time.Sub(stopped).Round(time.Millisecond))
	assert.Less(t, bConn.Time.Sub(stopped), 3*busyLooks, "the second stream started")
	assert.Empty(t, b.h.events(replicate.TookOver), "the second stream ended a process, with the slot free")
	after := insert(5)
	b.h.waitRows(after)
	if aConn.PID != 0 {
		// The first reported the position it had handled as it stopped.
		assert.Equal(t, after, mine(b.h.received()), "the second stream's rows")
	} else {
		// Without From, the second started at the end of the binary log
		// when it started, before it waited.
		assert.Equal(t, append(slices.Clone(during), after...), mine(b.h.received()), "the second stream's rows")
	}

	// A third takes over: once.
	before = db.starts()
	c := start("stream", true)
	tookOver := c.h.waitEvent(replicate.TookOver, time.Time{})
	c.h.waitEvent(replicate.Connected, time.Time{})
	bLost := b.h.waitEvent(replicate.Lost, bConn.Time)
	bBusy := b.h.waitEvent(replicate.Busy, bLost.Time)
	t.Logf("the third stream took over from %v; the second lost its stream (%v) and waits for %v", tookOver.Holder, bLost.Err, bBusy.Holder)
	if bConn.PID != 0 {
		assert.Equal(t, bConn.PID, tookOver.PID, "the process the third stream ended")
	}
	last := insert(5)
	c.h.waitRows(last)
	time.Sleep(3 * busyLooks)
	ended := db.starts() - before
	t.Logf("take-over: %d server processes ended or dumps started in %v", ended, time.Since(tookOver.Time).Round(time.Millisecond))
	// Once, unless the second reconnected and took the slot before the
	// third started; each is the third's.
	assert.Equal(t, len(c.h.events(replicate.TookOver)), ended, "streams ended by another, in the server's log, against the third stream's take-overs")
	assert.GreaterOrEqual(t, ended, 1, "streams ended by another, in the server's log")
	assert.Empty(t, b.h.events(replicate.TookOver), "the second stream took the stream back")
	assert.Len(t, b.h.events(replicate.Connected), 1, "the second stream's connections")
	assert.Len(t, c.h.events(replicate.Connected), 1, "the third stream's connections")
	assert.Empty(t, c.h.events(replicate.Lost), "the third stream lost its stream")
	assert.NotContains(t, b.h.received(), last[0], "the second stream delivered a row after it was taken over")
}

// busyLooks is how often a waiting stream looks again whether it may
// start (replicate's busyPoll).
const busyLooks = time.Second

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
