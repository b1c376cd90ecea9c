// Package replicate streams changes out of a database for as long as it is
// told to: PostgreSQL logical replication ([Postgres]) and the MariaDB
// binary log ([MariaDB]). Each hands every committed transaction to a
// handler, in commit order, and when its connection dies it connects again
// and resumes after the last transaction the handler accepted.
//
// It is the service the keepalive library is for. A stream can be silent
// for hours; a firewall that forgets idle flows, or its nightly clean-up,
// then drops the flow without telling either end, and a stream without
// keepalive waits for data that never comes. Dialed through a
// keepalive.Dialer, the flow stays known to the firewall while it is idle,
// and a dropped flow is noticed within the Config's detection time, after
// which the stream reconnects on its own.
//
// # One consumer at a time
//
// A PostgreSQL slot streams to one connection at a time, and a MariaDB
// server ends a replica's stream when another registers with the same
// server_id. Two streams started on one slot or server ID by mistake would
// end each other's connection on every reconnection. Run never does that:
// it ends what holds its slot (or server ID) only when that is known to be
// dead, that is when it is the server's end of one of Run's own earlier
// connections, which Run has closed (a connection that died without a
// word, which the server keeps until its own timeout notices), or, for
// MariaDB, a stream of this package registered from a process on this
// host that no longer runs. Any other holder is left alone: Run reports it
// once in a [Busy] event and waits, looking again every second, until the
// holder is gone, then starts. The TakeOver fields ask for one forced
// hand-over when Run starts, for an operator who knows better; a Run whose
// stream was taken over waits and does not take it back.
package replicate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

// The defaults of Postgres, MariaDB and their reconnection.
const (
	// defaultStatusInterval is pg_recvlogical's default --status-interval.
	defaultStatusInterval = 10 * time.Second
	// feedbackDelay is how long the stream must be quiet after a commit
	// before Postgres reports its new position, so that a burst of
	// transactions costs one status update.
	feedbackDelay = 200 * time.Millisecond
	minBackoff    = 100 * time.Millisecond
	maxBackoff    = 5 * time.Second
	closeTimeout  = time.Second
	// busyPoll is how often a Run that waits for its slot or server ID
	// looks again.
	busyPoll = time.Second
	// releaseTimeout bounds the wait for a server process that was told
	// to end to let go of the slot, and releasePoll is how often Run looks
	// meanwhile: much sooner than the ended stream reconnects (minBackoff),
	// so that the slot goes to the Run that took it over.
	releaseTimeout = 5 * time.Second
	releasePoll    = 10 * time.Millisecond
)

// Txn is a committed transaction.
type Txn struct {
	// Commit is the position of the transaction's commit, End the position
	// after it, which the stream resumes from.
	Commit, End Position
	Time        time.Time
	Changes     []Change
}

// Change is one row that a transaction inserted, updated or deleted.
type Change struct {
	Op    string // "insert", "update" or "delete"
	Table string // schema.table
	// Row has the row's columns, as text; a NULL is nil. For an update it
	// is the new row, for a delete the old row's key (or whole row, as the
	// table's replica identity says).
	Row map[string]*string
}

// Position is a point in a change stream: a PostgreSQL WAL position
// (LSN), or a MariaDB binary log file and offset.
type Position struct {
	LSN  pglogrepl.LSN
	File string
	Pos  uint32
}

// MarshalText writes the position as String does, so that it is a string
// in JSON.
func (p Position) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// String returns the position as PostgreSQL writes an LSN (0/16B3748), or
// as file:offset.
func (p Position) String() string {
	if p.File != "" {
		return fmt.Sprintf("%s:%d", p.File, p.Pos)
	}
	return p.LSN.String()
}

// EventKind says what an Event reports.
type EventKind int

const (
	// Connected: a connection was made and the stream starts at Position
	// (for PostgreSQL, zero means the slot's confirmed position).
	Connected EventKind = iota
	// Lost: the stream's connection failed with Err; Run reconnects after
	// Delay.
	Lost
	// ConnectFailed: connecting failed with Err; Run tries again after
	// Delay.
	ConnectFailed
	// TookOver: Holder, which held the slot or server ID and was known to
	// be dead (or TakeOver asked for it), was ended.
	TookOver
	// Busy: Holder, another consumer that is not known to be dead, holds
	// the slot or server ID; Run waits until it is free and looks again
	// every Delay. It is reported once per holder.
	Busy
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Lost:
		return "lost"
	case ConnectFailed:
		return "connect failed"
	case TookOver:
		return "took over"
	case Busy:
		return "busy"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event reports a change of a stream's state.
type Event struct {
	Kind     EventKind
	Time     time.Time
	Position Position      // Connected: where the stream starts
	Local    net.Addr      // Connected: the connection's local address
	Err      error         // Lost, ConnectFailed
	Delay    time.Duration // Lost, ConnectFailed, Busy: until the next attempt
	// PID is, for Connected, the PostgreSQL server process of the
	// connection; for TookOver and Busy, Holder.PID.
	PID    int
	Holder Holder // TookOver, Busy
}

// Holder is what holds a stream's PostgreSQL slot or MariaDB server ID
// when Run wants it. A field is zero where the server did not tell (a
// PostgreSQL role sees the details of its own and, with pg_read_all_stats,
// of every server process).
type Holder struct {
	// PID is the PostgreSQL server process (walsender) that holds the
	// slot; zero for MariaDB.
	PID int
	// Client is whom the holder streams to: for PostgreSQL the client's
	// address and port as the server sees them, for MariaDB the host the
	// replica registered as, which for this package's streams is
	// "hostname/pid/run".
	Client string
	// Name is the holder's application_name (PostgreSQL).
	Name string
	// Since is when the holder's connection started (PostgreSQL).
	Since time.Time
	// LastReply is when the holder's client last sent a standby status
	// update, by the client's clock (PostgreSQL's reply_time).
	LastReply time.Time
}

// String describes h for a log: "server process 123 (client
// 10.0.0.5:41234, application replicate, since 2026-01-02 10:04:05, last
// reply 2026-01-02 10:06:01)", or for MariaDB "replica db2/4321/1".
func (h Holder) String() string {
	var details []string
	if h.PID != 0 && h.Client != "" {
		details = append(details, "client "+h.Client)
	}
	if h.Name != "" {
		details = append(details, "application "+h.Name)
	}
	if !h.Since.IsZero() {
		details = append(details, "since "+h.Since.Format(time.DateTime))
	}
	if !h.LastReply.IsZero() {
		details = append(details, "last reply "+h.LastReply.Format(time.DateTime))
	}
	var s string
	switch {
	case h.PID != 0:
		s = fmt.Sprintf("server process %d", h.PID)
	case h.Client != "":
		s = "replica " + h.Client
	default:
		s = "another consumer"
	}
	if len(details) > 0 {
		s += " (" + strings.Join(details, ", ") + ")"
	}
	return s
}

// errStop wraps the errors that end Run rather than a connection: the
// handler's, and a server's refusal that retrying cannot change.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }
func (e errStop) Unwrap() error { return e.err }

// runLoop runs session until ctx is done or the handler fails, reporting
// each failure through event and waiting a delay that doubles from
// minBackoff to maxBackoff, and starts again at minBackoff once a stream
// has started.
func runLoop(ctx context.Context, session func(context.Context) (started bool, failed time.Time, err error), event func(Event)) error {
	backoff := minBackoff
	for {
		started, failed, err := session(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var stop errStop
		if errors.As(err, &stop) {
			return stop.err
		}
		kind := ConnectFailed
		if started {
			kind = Lost
			backoff = minBackoff
		}
		event(Event{Kind: kind, Time: failed, Err: err, Delay: backoff})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
