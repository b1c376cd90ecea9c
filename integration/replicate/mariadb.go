package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// MariaDB streams a MariaDB server's binary log (binlog_format=ROW) as a
// replica does, through go-mysql's BinlogSyncer. Its fields must not change
// while Run runs.
//
// Delivery is as for [Postgres]: a transaction the handler accepted is not
// delivered again by the same Run, which resumes at the binary log position
// after it; a transaction cut off before its commit is delivered whole
// after the reconnection. Where a new Run starts is From, which the caller
// keeps.
type MariaDB struct {
	// Addr is the server's host:port.
	Addr string
	// User and Password log in; the user needs REPLICATION SLAVE,
	// REPLICATION MASTER ADMIN (to list the server's replicas), and
	// BINLOG MONITOR when From is zero.
	User, Password string

	// ServerID identifies the stream to the server as a replica: it must
	// differ from the server's and from its other replicas' server_id. A
	// new stream with the same ServerID makes the server end the old one's
	// (its error 4052), so before each stream Run looks for a replica
	// registered with ServerID (SHOW REPLICA HOSTS) and waits while one
	// is there, reporting it in a Busy event, unless it is known to be
	// dead (see the package documentation) or TakeOver applies. The
	// stream registers as "hostname/pid/run".
	ServerID uint32

	// TakeOver, when Run starts, streams even if another replica is
	// registered with ServerID, which makes the server end that
	// replica's stream: a forced hand-over. It applies until Run's first
	// stream starts; a Run whose stream another replica took over waits
	// and does not take it back.
	TakeOver bool

	// Dial dials every connection: set it to a keepalive.Dialer's
	// DialContext. It is BinlogSyncerConfig.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// From is where the stream starts: a binary log file and the offset in
	// it. If File is empty, it starts at the server's current end (SHOW
	// MASTER STATUS) when Run starts, before any wait for ServerID: a Run
	// that waited for another stream delivers again what that stream
	// delivered meanwhile.
	From Position

	// Handle and OnEvent are as for Postgres. Without
	// binlog_row_metadata=FULL on the server, the binary log carries no
	// column names, and a Change's columns are named @1, @2, ...
	Handle  func(Txn) error
	OnEvent func(Event)

	// Logger receives go-mysql's own log; nil discards it.
	Logger *slog.Logger
}

// Run streams until ctx is done, then returns ctx's error, or until the
// handler fails, then returns its error. Every other failure is reported
// through OnEvent and retried as Postgres.Run does.
func (m *MariaDB) Run(ctx context.Context) error {
	if m.Dial == nil || m.Handle == nil || m.ServerID == 0 {
		return errors.New("replicate: MariaDB needs a Dial, a Handle and a ServerID")
	}
	host, port, err := net.SplitHostPort(m.Addr)
	if err != nil {
		return fmt.Errorf("replicate: %w", err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return fmt.Errorf("replicate: port %q: %w", port, err)
	}
	s := &mariaSession{m: m, host: host, port: uint16(p), pos: m.From, name: replicaName()}
	liveRuns.Store(s.name, true)
	defer liveRuns.Delete(s.name)
	return runLoop(ctx, s.run, m.event)
}

var (
	// runs counts the MariaDB Runs of the process, to name each.
	runs atomic.Int64
	// liveRuns holds the names of the process's running MariaDB Runs.
	liveRuns sync.Map
)

// replicaName returns the name a new Run registers its streams as:
// "hostname/pid/run".
func replicaName() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s/%d/%d", host, os.Getpid(), runs.Add(1))
}

// registeredDead reports whether name, which a replica registered as, is
// known to be a stream of this package whose Run no longer runs: a Run of
// this process that has returned, or of a process on this host that has
// exited. Of any other replica nothing is known.
func registeredDead(name string) bool {
	host, _ := os.Hostname()
	h, rest, _ := strings.Cut(name, "/")
	pidText, _, ok := strings.Cut(rest, "/")
	pid, err := strconv.Atoi(pidText)
	if !ok || err != nil || h != host || pid <= 0 {
		return false
	}
	if pid == os.Getpid() {
		_, live := liveRuns.Load(name)
		return !live
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return true // Windows: no such process
	}
	defer p.Release()
	return errors.Is(p.Signal(syscall.Signal(0)), os.ErrProcessDone)
}

func (m *MariaDB) event(e Event) {
	if m.OnEvent != nil {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		m.OnEvent(e)
	}
}

// mariaSession is the state a Run keeps across connections.
type mariaSession struct {
	m    *MariaDB
	host string
	port uint16
	// pos is the position after the last transaction the handler accepted.
	pos Position
	// name is what the Run's streams register as.
	name string
	// started reports whether a stream has started.
	started bool
	// busy is the replica last reported in a Busy event.
	busy string
}

// MariaDB's error codes.
const (
	// errSameServerID (ER_SLAVE_SAME_ID) ends a stream when another
	// replica registers with its server_id.
	errSameServerID = 4052
	// errAccessDenied (ER_SPECIFIC_ACCESS_DENIED_ERROR): a privilege is
	// missing.
	errAccessDenied = 1227
)

// errorCode returns the MariaDB error code of err, which go-mysql may have
// kept as text only, or 0.
func errorCode(err error) int {
	var my *mysql.MyError
	if errors.As(err, &my) {
		return int(my.Code)
	}
	if err == nil {
		return 0
	}
	return mysql.ErrorCode(err.Error())
}

// recordingDial is a dial function that remembers the last connection it
// made.
type recordingDial struct {
	dial func(ctx context.Context, network, address string) (net.Conn, error)
	mu   sync.Mutex
	last net.Conn
}

func (d *recordingDial) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.dial(ctx, network, address)
	if err == nil {
		d.mu.Lock()
		d.last = c
		d.mu.Unlock()
	}
	return c, err
}

func (d *recordingDial) localAddr() net.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil {
		return nil
	}
	return d.last.LocalAddr()
}

// run makes one connection and streams over it until it fails.
func (s *mariaSession) run(ctx context.Context) (started bool, failed time.Time, err error) {
	m := s.m
	if s.pos.File == "" {
		if s.pos, err = s.serverPosition(ctx); err != nil {
			return false, time.Now(), err
		}
	}
	if err := s.waitServerID(ctx); err != nil {
		return false, time.Now(), err
	}
	logger := m.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	dial := &recordingDial{dial: m.Dial}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID: m.ServerID,
		Flavor:   mysql.MariaDBFlavor,
		Host:     s.host,
		Port:     s.port,
		User:     m.User,
		Password: m.Password,
		Dialer:   dial.DialContext,
		Logger:   logger,
		// What SHOW REPLICA HOSTS shows, and waitServerID reads.
		Localhost: s.name,
		// Run reconnects itself, from the last handled transaction rather
		// than the last event received.
		DisableRetrySync: true,
	})
	// Close opens a connection of its own to KILL the stream's, which ends
	// the server's dump thread of a dead connection too.
	defer syncer.Close()
	streamer, err := syncer.StartSync(mysql.Position{Name: s.pos.File, Pos: s.pos.Pos})
	if err != nil {
		return false, time.Now(), err
	}
	s.started = true
	m.event(Event{Kind: Connected, Position: s.pos, Local: dial.localAddr()})
	err = s.stream(ctx, streamer)
	if errorCode(err) == errSameServerID {
		err = fmt.Errorf("another replica registered with server_id %d and the server ended this stream: %w", m.ServerID, err)
	}
	return true, time.Now(), err
}

// waitServerID returns once no replica that may be streaming is
// registered with the Run's ServerID: none is, or the one registered is
// the Run's own earlier stream, a dead stream of this package (see
// registeredDead), or TakeOver applies. The stream that then registers
// makes the server end the registered one's. Any other is reported in a
// Busy event and waited for.
func (s *mariaSession) waitServerID(ctx context.Context) error {
	m := s.m
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := client.ConnectWithDialer(cctx, "", m.Addr, m.User, m.Password, "", m.Dial)
	cancel()
	if err != nil {
		return err
	}
	defer quit(c)
	for {
		r, err := c.Execute("SHOW REPLICA HOSTS")
		if errorCode(err) == errAccessDenied {
			return errStop{fmt.Errorf("replicate: user %s cannot list the server's replicas, to tell whether another one streams with server_id %d: %w", m.User, m.ServerID, err)}
		}
		if err != nil {
			return err
		}
		var holder string
		for row := range r.RowNumber() {
			if id, _ := r.GetUint(row, 0); id == uint64(m.ServerID) {
				holder, _ = r.GetString(row, 1)
			}
		}
		h := Holder{Client: holder}
		switch {
		case holder == "":
			return nil
		case holder == s.name || registeredDead(holder) || m.TakeOver && !s.started:
			m.event(Event{Kind: TookOver, Holder: h})
			return nil
		case holder != s.busy:
			s.busy = holder
			m.event(Event{Kind: Busy, Holder: h, Delay: busyPoll})
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(busyPoll):
		}
	}
}

// quit ends c with COM_QUIT, so that the server does not log an aborted
// connection, and closes it.
func quit(c *client.Conn) {
	if c.Quit() != nil {
		c.Close()
	}
}

// serverPosition returns the end of the server's binary log.
func (s *mariaSession) serverPosition(ctx context.Context) (Position, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.ConnectWithDialer(ctx, "", s.m.Addr, s.m.User, s.m.Password, "", s.m.Dial)
	if err != nil {
		return Position{}, err
	}
	defer quit(c)
	r, err := c.Execute("SHOW MASTER STATUS")
	if err != nil {
		return Position{}, err
	}
	if r.RowNumber() == 0 {
		return Position{}, errors.New("SHOW MASTER STATUS returned nothing: the server has no binary log (log_bin)")
	}
	file, err := r.GetString(0, 0)
	if err != nil {
		return Position{}, err
	}
	pos, err := r.GetUint(0, 1)
	if err != nil {
		return Position{}, err
	}
	return Position{File: file, Pos: uint32(pos)}, nil
}

// stream receives and handles binary log events until the connection fails
// or ctx is done.
func (s *mariaSession) stream(ctx context.Context, streamer *replication.BinlogStreamer) error {
	file := s.pos.File
	var txn *Txn
	commit := func(h *replication.EventHeader) error {
		end := Position{File: file, Pos: h.LogPos}
		if txn != nil {
			txn.Commit = Position{File: file, Pos: h.LogPos - h.EventSize}
			txn.End = end
			if err := s.m.Handle(*txn); err != nil {
				return errStop{err}
			}
		}
		s.pos, txn = end, nil
		return nil
	}
	for {
		ev, err := streamer.GetEvent(ctx)
		if err != nil {
			return err
		}
		switch e := ev.Event.(type) {
		case *replication.RotateEvent:
			file = string(e.NextLogName)
			if txn == nil {
				s.pos = Position{File: file, Pos: uint32(e.Position)}
			}
		case *replication.MariadbGTIDEvent:
			txn = &Txn{Time: time.Unix(int64(ev.Header.Timestamp), 0)}
		case *replication.RowsEvent:
			if txn == nil {
				txn = &Txn{Time: time.Unix(int64(ev.Header.Timestamp), 0)}
			}
			txn.Changes = append(txn.Changes, rowChanges(e)...)
		case *replication.XIDEvent:
			if err := commit(ev.Header); err != nil {
				return err
			}
		case *replication.QueryEvent:
			switch q := string(e.Query); q {
			case "BEGIN":
			case "COMMIT": // a non-transactional table's changes
				if err := commit(ev.Header); err != nil {
					return err
				}
			default: // DDL: a transaction of its own, with no rows
				if txn == nil || len(txn.Changes) == 0 {
					txn = nil
					if err := commit(ev.Header); err != nil {
						return err
					}
				}
			}
		}
	}
}

// rowChanges turns a rows event into Changes. An update's rows come in
// pairs, before and after; the Change has the row after.
func rowChanges(e *replication.RowsEvent) []Change {
	table := string(e.Table.Schema) + "." + string(e.Table.Table)
	names := e.Table.ColumnNameString()
	row := func(values []any) map[string]*string {
		r := make(map[string]*string, len(values))
		for i, v := range values {
			name := "@" + strconv.Itoa(i+1)
			if i < len(names) {
				name = names[i]
			}
			if v == nil {
				r[name] = nil
				continue
			}
			var s string
			if b, ok := v.([]byte); ok {
				s = string(b)
			} else {
				s = fmt.Sprint(v)
			}
			r[name] = &s
		}
		return r
	}
	var out []Change
	switch e.Type() {
	case replication.EnumRowsEventTypeInsert:
		for _, v := range e.Rows {
			out = append(out, Change{Op: "insert", Table: table, Row: row(v)})
		}
	case replication.EnumRowsEventTypeUpdate:
		for i := 1; i < len(e.Rows); i += 2 {
			out = append(out, Change{Op: "update", Table: table, Row: row(e.Rows[i])})
		}
	case replication.EnumRowsEventTypeDelete:
		for _, v := range e.Rows {
			out = append(out, Change{Op: "delete", Table: table, Row: row(v)})
		}
	}
	return out
}
