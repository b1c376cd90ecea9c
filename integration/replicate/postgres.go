package replicate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Postgres streams a PostgreSQL logical replication slot through the
// pgoutput plugin. Its fields must not change while Run runs.
//
// Delivery is at least once: a transaction the handler accepted is never
// delivered again by the same Run, which resumes after it; a transaction
// cut off by a dead connection before its commit arrived is delivered whole
// after the reconnection. A new Run (a restarted process) starts at the
// slot's confirmed position, which can be behind the last transaction the
// previous Run's handler accepted by the status updates the server did not
// receive: those transactions are delivered again.
type Postgres struct {
	// Config is the connection's configuration, from pgconn.ParseConfig.
	// Its DialFunc dials every connection: set it to a keepalive.Dialer's
	// DialContext. Run connects with a copy that asks for a logical
	// replication connection (replication=database).
	Config *pgconn.Config

	// Slot is the name of the logical replication slot: lower-case letters,
	// digits and underscores. Run creates it with the pgoutput plugin if it
	// does not exist.
	Slot string

	// Publication names the publication whose tables pgoutput streams; it
	// must exist.
	Publication string

	// StatusInterval is the longest time between two standby status
	// updates, which tell the server how far the stream has been handled.
	// Zero means 10 s (pg_recvlogical's default); it must stay below the
	// server's wal_sender_timeout (60 s by default). Status updates also
	// go out after each burst of transactions and when the server asks.
	StatusInterval time.Duration

	// TakeOver ends the server process that holds the slot when Run
	// connects, with pg_terminate_backend. After a connection dies without
	// a word, the server keeps its end, and with it the slot, until
	// wal_sender_timeout passes or its own TCP gives up; until then
	// START_REPLICATION fails with "replication slot ... is active". If
	// false, Run retries until the slot is free. Taking over needs
	// superuser or membership in pg_signal_backend; it also ends another
	// running consumer of the same slot.
	TakeOver bool

	// Handle is called with each committed transaction, in commit order,
	// from Run's goroutine. When it returns nil the transaction counts as
	// handled: its end is the position Run reports to the server and
	// resumes from. An error stops Run, which returns it.
	Handle func(Txn) error

	// OnEvent, if not nil, is called from Run's goroutine with each change
	// of the stream's state.
	OnEvent func(Event)
}

var (
	slotName       = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	identifierName = regexp.MustCompile(`^[a-z_][a-z0-9_$]{0,62}$`)
)

// Run streams until ctx is done, then returns ctx's error, or until the
// handler fails, then returns its error. Every other failure (refused or
// lost connections, server errors) is reported through OnEvent and retried
// after a delay that doubles from 100 ms to 5 s and starts again at 100 ms
// once a stream has started.
func (p *Postgres) Run(ctx context.Context) error {
	if p.Config == nil || p.Handle == nil {
		return errors.New("replicate: Postgres needs a Config and a Handle")
	}
	if !slotName.MatchString(p.Slot) {
		return fmt.Errorf("replicate: slot name %q: want 1 to 63 lower-case letters, digits and underscores", p.Slot)
	}
	if !identifierName.MatchString(p.Publication) {
		return fmt.Errorf("replicate: publication name %q: want a lower-case identifier", p.Publication)
	}
	s := &pgSession{p: p}
	return runLoop(ctx, s.run, p.event)
}

func (p *Postgres) event(e Event) {
	if p.OnEvent != nil {
		if e.Time.IsZero() {
			e.Time = time.Now()
		}
		p.OnEvent(e)
	}
}

func (p *Postgres) statusInterval() time.Duration {
	if p.StatusInterval > 0 {
		return p.StatusInterval
	}
	return defaultStatusInterval
}

// pgSession is the state a Run keeps across connections.
type pgSession struct {
	p *Postgres
	// handled is the end of the last transaction the handler accepted, or
	// the position the server said was complete; zero before the first.
	handled pglogrepl.LSN
}

// run makes one connection and streams over it until it fails. started
// reports whether the stream started, failed when it failed.
func (s *pgSession) run(ctx context.Context) (started bool, failed time.Time, err error) {
	p := s.p
	cfg := p.Config.Copy()
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, time.Now(), err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		conn.Close(cctx)
	}()
	if err := s.prepareSlot(ctx, conn); err != nil {
		return false, time.Now(), err
	}
	err = pglogrepl.StartReplication(ctx, conn, p.Slot, s.handled, pglogrepl.StartReplicationOptions{
		PluginArgs: []string{"proto_version '1'", "publication_names '" + p.Publication + "'"},
	})
	if err != nil {
		return false, time.Now(), fmt.Errorf("START_REPLICATION: %w", err)
	}
	p.event(Event{Kind: Connected, Position: Position{LSN: s.handled}, Local: conn.Conn().LocalAddr()})
	err = s.stream(ctx, conn)
	return true, time.Now(), err
}

// prepareSlot creates the slot if it does not exist, and otherwise ends
// the process that holds it if p.TakeOver is set. A first connection
// starts at the slot's confirmed position.
func (s *pgSession) prepareSlot(ctx context.Context, conn *pgconn.PgConn) error {
	p := s.p
	// A replication connection speaks the simple query protocol only; the
	// slot's name has been checked to need no quoting.
	rows, err := query(ctx, conn, "SELECT active_pid, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '"+p.Slot+"'")
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		res, err := pglogrepl.CreateReplicationSlot(ctx, conn, p.Slot, "pgoutput", pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication})
		if err != nil {
			return fmt.Errorf("creating slot %s: %w", p.Slot, err)
		}
		if s.handled == 0 {
			s.handled, err = pglogrepl.ParseLSN(res.ConsistentPoint)
		}
		return err
	}
	if s.handled == 0 && rows[0][1] != nil {
		if s.handled, err = pglogrepl.ParseLSN(string(rows[0][1])); err != nil {
			return err
		}
	}
	if pid := rows[0][0]; pid != nil && p.TakeOver {
		if _, err := query(ctx, conn, "SELECT pg_terminate_backend("+string(pid)+")"); err != nil {
			return fmt.Errorf("ending the process %s that holds slot %s: %w", pid, p.Slot, err)
		}
		var n int
		fmt.Sscan(string(pid), &n)
		p.event(Event{Kind: TookOver, PID: n})
	}
	return nil
}

// query runs sql with the simple query protocol and returns its rows.
func query(ctx context.Context, conn *pgconn.PgConn, sql string) ([][][]byte, error) {
	res, err := conn.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	var rows [][][]byte
	for _, r := range res {
		rows = append(rows, r.Rows...)
	}
	return rows, nil
}

// stream receives and handles the stream's messages until the connection
// fails or ctx is done.
func (s *pgSession) stream(ctx context.Context, conn *pgconn.PgConn) error {
	p := s.p
	relations := map[uint32]*pglogrepl.RelationMessage{}
	var txn *Txn
	reported := s.handled
	nextStatus := time.Now().Add(p.statusInterval())
	report := func() error {
		err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{WALWritePosition: s.handled})
		if err != nil {
			return fmt.Errorf("sending standby status update: %w", err)
		}
		reported = s.handled
		nextStatus = time.Now().Add(p.statusInterval())
		return nil
	}
	for {
		deadline := nextStatus
		if soon := time.Now().Add(feedbackDelay); reported != s.handled && soon.Before(deadline) {
			deadline = soon
		}
		rctx, cancel := context.WithDeadline(ctx, deadline)
		msg, err := conn.ReceiveMessage(rctx)
		expired := rctx.Err() == context.DeadlineExceeded
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// pgconn reports both its deadline and a socket's ETIMEDOUT
			// (keepalive found the peer gone) as a timeout: only the
			// deadline is the stream's own.
			if expired && pgconn.Timeout(err) && !errors.Is(err, syscall.ETIMEDOUT) {
				if err := report(); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("receiving: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if len(msg.Data) == 0 {
				return errors.New("empty CopyData message")
			}
			switch msg.Data[0] {
			case pglogrepl.PrimaryKeepaliveMessageByteID:
				pkm, err := pglogrepl.ParsePrimaryKeepaliveMessage(msg.Data[1:])
				if err != nil {
					return err
				}
				// Everything up to ServerWALEnd has been sent, and all of
				// it handled unless a transaction is open.
				if txn == nil && pkm.ServerWALEnd > s.handled {
					s.handled = pkm.ServerWALEnd
				}
				if pkm.ReplyRequested {
					if err := report(); err != nil {
						return err
					}
				}
			case pglogrepl.XLogDataByteID:
				xld, err := pglogrepl.ParseXLogData(msg.Data[1:])
				if err != nil {
					return err
				}
				if txn, err = s.decode(xld.WALData, relations, txn); err != nil {
					return err
				}
			}
		case *pgproto3.ErrorResponse:
			return pgconn.ErrorResponseToPgError(msg)
		case *pgproto3.CopyDone:
			return errors.New("the server ended the stream")
		}
	}
}

// decode handles one pgoutput message and returns the open transaction.
func (s *pgSession) decode(data []byte, relations map[uint32]*pglogrepl.RelationMessage, txn *Txn) (*Txn, error) {
	m, err := pglogrepl.Parse(data)
	if err != nil {
		return txn, fmt.Errorf("decoding pgoutput: %w", err)
	}
	change := func(op string, rel uint32, tuple *pglogrepl.TupleData) error {
		r, ok := relations[rel]
		if !ok {
			return fmt.Errorf("change to unknown relation %d", rel)
		}
		if txn == nil {
			return fmt.Errorf("%s outside a transaction", op)
		}
		c := Change{Op: op, Table: r.Namespace + "." + r.RelationName, Row: map[string]*string{}}
		if tuple != nil {
			for i, col := range tuple.Columns {
				if i >= len(r.Columns) {
					break
				}
				switch col.DataType {
				case 't':
					v := string(col.Data)
					c.Row[r.Columns[i].Name] = &v
				case 'n':
					c.Row[r.Columns[i].Name] = nil
				}
			}
		}
		txn.Changes = append(txn.Changes, c)
		return nil
	}
	switch m := m.(type) {
	case *pglogrepl.RelationMessage:
		relations[m.RelationID] = m
	case *pglogrepl.BeginMessage:
		txn = &Txn{Commit: Position{LSN: m.FinalLSN}, Time: m.CommitTime}
	case *pglogrepl.InsertMessage:
		err = change("insert", m.RelationID, m.Tuple)
	case *pglogrepl.UpdateMessage:
		err = change("update", m.RelationID, m.NewTuple)
	case *pglogrepl.DeleteMessage:
		err = change("delete", m.RelationID, m.OldTuple)
	case *pglogrepl.CommitMessage:
		if txn == nil {
			return nil, errors.New("commit outside a transaction")
		}
		txn.End = Position{LSN: m.TransactionEndLSN}
		if err := s.p.Handle(*txn); err != nil {
			return nil, errHandle{err}
		}
		s.handled = m.TransactionEndLSN
		return nil, nil
	}
	return txn, err
}
