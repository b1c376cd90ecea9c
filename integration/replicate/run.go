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
package replicate

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	// TookOver: the server process PID, which held the slot, was ended.
	TookOver
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
	Delay    time.Duration // Lost, ConnectFailed: until the next attempt
	PID      int           // TookOver
}

// errHandle wraps the handler's errors, which end Run.
type errHandle struct{ err error }

func (e errHandle) Error() string { return e.err.Error() }
func (e errHandle) Unwrap() error { return e.err }

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
		var h errHandle
		if errors.As(err, &h) {
			return h.err
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
