package replicate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
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

	// TakeOver, when Run starts, ends the server process that holds the
	// slot, whatever it streams to, with pg_terminate_backend: a forced
	// hand-over, for a holder known to be gone (its host is down) or to be
	// replaced. It applies until Run's first stream starts (should the
	// consumer ended reconnect first and take the slot again, it is ended
	// again); a Run whose stream was taken over waits and does not take it
	// back.
	//
	// If false, Run ends only the server processes of its own earlier
	// connections, which it has closed (after a connection dies without a
	// word, the server keeps its end, and with it the slot, until
	// wal_sender_timeout passes or its own TCP gives up). Any other holder
	// is reported in a Busy event and waited for: a consumer that stops
	// cleanly frees the slot at once, and the server ends one whose client
	// is gone after wal_sender_timeout (60 s by default). Ending a server
	// process needs the same role as the holder, membership in
	// pg_signal_backend, or superuser.
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
	// started reports whether a stream has started.
	started bool
	// mine holds the server processes of the Run's connections, newest
	// last, at most maxMine: once a connection is closed, its server
	// process is known to stream to no one.
	mine []backend
	// busy is the holder last reported in a Busy event.
	busy backend
}

// maxMine bounds pgSession.mine: a server keeps a dead connection's
// process until its wal_sender_timeout, a few reconnections at most.
const maxMine = 8

// backend identifies a server process: its PID, and when it started, so
// that a reused PID is not taken for it.
type backend struct {
	pid   int
	start string // extract(epoch from backend_start), as text
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
	// The server processes of the Run's earlier connections, all closed by
	// now; this one joins them for the next connection.
	earlier := slices.Clone(s.mine)
	own, err := ownBackend(ctx, conn)
	if err != nil {
		return false, time.Now(), err
	}
	s.mine = append(s.mine, own)
	if len(s.mine) > maxMine {
		s.mine = s.mine[len(s.mine)-maxMine:]
	}
	for {
		if err := s.waitSlot(ctx, conn, earlier); err != nil {
			return false, time.Now(), err
		}
		err = pglogrepl.StartReplication(ctx, conn, p.Slot, s.handled, pglogrepl.StartReplicationOptions{
			PluginArgs: []string{"proto_version '1'", "publication_names '" + p.Publication + "'"},
		})
		if err == nil {
			break
		}
		if !slotActive(err) {
			return false, time.Now(), fmt.Errorf("START_REPLICATION: %w", err)
		}
		// Another consumer took the slot between the look and the start:
		// read the rest of the refusal and wait again.
		if err := readyForQuery(ctx, conn); err != nil {
			return false, time.Now(), err
		}
	}
	s.started = true
	p.event(Event{Kind: Connected, Position: Position{LSN: s.handled}, Local: conn.Conn().LocalAddr(), PID: own.pid})
	err = s.stream(ctx, conn)
	return true, time.Now(), err
}

// ownBackend returns the server process of conn.
func ownBackend(ctx context.Context, conn *pgconn.PgConn) (backend, error) {
	rows, err := query(ctx, conn, "SELECT pid, extract(epoch FROM backend_start) FROM pg_stat_activity WHERE pid = pg_backend_pid()")
	if err != nil {
		return backend{}, err
	}
	if len(rows) != 1 {
		return backend{}, errors.New("pg_stat_activity does not list the connection's own server process")
	}
	pid, _ := strconv.Atoi(string(rows[0][0]))
	return backend{pid: pid, start: string(rows[0][1])}, nil
}

// waitSlot returns once the slot exists and no server process holds it. It
// creates a missing slot. A holder that is one of the earlier server
// processes of the Run (or any, if TakeOver applies) is ended; any other
// is reported in a Busy event and waited for. A first connection starts at
// the slot's confirmed position, read once the slot is free.
func (s *pgSession) waitSlot(ctx context.Context, conn *pgconn.PgConn, earlier []backend) error {
	p := s.p
	var ended backend // the holder told to end, and until when it may take
	var endBy time.Time
	for {
		// A replication connection speaks the simple query protocol only;
		// the slot's name has been checked to need no quoting.
		rows, err := query(ctx, conn, `SELECT s.active_pid, s.confirmed_flush_lsn, extract(epoch FROM a.backend_start),
	host(a.client_addr) || ':' || a.client_port, a.application_name, extract(epoch FROM r.reply_time)
FROM pg_replication_slots s
LEFT JOIN pg_stat_activity a ON a.pid = s.active_pid
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid
WHERE s.slot_name = '`+p.Slot+"'")
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
		row := rows[0]
		if row[0] == nil {
			if s.handled == 0 && row[1] != nil {
				s.handled, err = pglogrepl.ParseLSN(string(row[1]))
			}
			return err
		}
		h := Holder{Client: string(row[3]), Name: string(row[4]), Since: epoch(row[2]), LastReply: epoch(row[5])}
		h.PID, _ = strconv.Atoi(string(row[0]))
		holder := backend{pid: h.PID, start: string(row[2])}
		delay := busyPoll
		switch {
		case holder == ended:
			if time.Now().After(endBy) {
				return fmt.Errorf("slot %s: %v was told to end %v ago and still holds it", p.Slot, h, releaseTimeout)
			}
			delay = releasePoll
		case slices.Contains(earlier, holder) || p.TakeOver && !s.started:
			if _, err := query(ctx, conn, "SELECT pg_terminate_backend("+strconv.Itoa(h.PID)+")"); err != nil {
				return fmt.Errorf("ending %v, which holds slot %s: %w", h, p.Slot, err)
			}
			p.event(Event{Kind: TookOver, PID: h.PID, Holder: h})
			ended, endBy = holder, time.Now().Add(releaseTimeout)
			delay = releasePoll
		default:
			if holder != s.busy {
				s.busy = holder
				p.event(Event{Kind: Busy, PID: h.PID, Holder: h, Delay: busyPoll})
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
	}
}

// epoch returns the time of a Unix time in seconds, as text, or the zero
// Time for NULL.
func epoch(v []byte) time.Time {
	f, err := strconv.ParseFloat(string(v), 64)
	if v == nil || err != nil {
		return time.Time{}
	}
	return time.UnixMicro(int64(f * 1e6))
}

// slotActive reports whether err is the server's refusal to stream a slot
// that another process holds.
func slotActive(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "55006" // object_in_use
}

// readyForQuery reads until the server is ready for a query, after an
// error that pglogrepl returned before reading to the end of it.
func readyForQuery(ctx context.Context, conn *pgconn.PgConn) error {
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return err
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			return nil
		}
	}
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
	report := func(ctx context.Context) error {
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
				// Stopped: tell the server what was handled, so that the
				// next consumer of the slot starts after it.
				if reported != s.handled {
					sctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
					report(sctx)
					cancel()
				}
				return ctx.Err()
			}
			// pgconn reports both its deadline and a socket's ETIMEDOUT
			// (keepalive found the peer gone) as a timeout: only the
			// deadline is the stream's own.
			if expired && pgconn.Timeout(err) && !errors.Is(err, syscall.ETIMEDOUT) {
				if err := report(ctx); err != nil {
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
					if err := report(ctx); err != nil {
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
			return nil, errStop{err}
		}
		s.handled = m.TransactionEndLSN
		return nil, nil
	}
	return txn, err
}
