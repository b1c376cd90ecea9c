package replicate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
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
	// User and Password log in; the user needs REPLICATION SLAVE, and
	// BINLOG MONITOR when From is zero.
	User, Password string

	// ServerID identifies the stream to the server as a replica: it must
	// differ from the server's and from its other replicas' server_id. A
	// new connection with the same ServerID makes the server end the old
	// one's dump thread.
	ServerID uint32

	// Dial dials every connection: set it to a keepalive.Dialer's
	// DialContext. It is BinlogSyncerConfig.Dialer.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// From is where the stream starts: a binary log file and the offset in
	// it. If File is empty, it starts at the server's current end (SHOW
	// MASTER STATUS).
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
	s := &mariaSession{m: m, host: host, port: uint16(p), pos: m.From}
	return runLoop(ctx, s.run, m.event)
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
	m.event(Event{Kind: Connected, Position: s.pos, Local: dial.localAddr()})
	err = s.stream(ctx, streamer)
	return true, time.Now(), err
}

// serverPosition returns the end of the server's binary log.
func (s *mariaSession) serverPosition(ctx context.Context) (Position, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := client.ConnectWithDialer(ctx, "", s.m.Addr, s.m.User, s.m.Password, "", s.m.Dial)
	if err != nil {
		return Position{}, err
	}
	defer c.Close()
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
				return errHandle{err}
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
