package integration_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// The dead-peer tests show what an application sees when keepalive
// declares a connection's peer dead: each client dials through the library
// with deadPeerConfig, starts the call an application would have waiting on
// the server (a long query, a blocking pop, a subscription, a stream), and
// then the flow is cut the way a firewall's clean-up cuts it: from then on
// nothing of it arrives, nobody is told, and new connections still work.
// Each test asserts the error the client's API returns (or that the client
// reconnected by itself) and that it came within the Config's bound,
// counted from the last segment the socket received, and logs a line
//
//	dead peer: client=NAME sees=... after=3.081s bound=3s ratio=1.027
//
// Each subtest sets up and cuts its client and then calls t.Parallel, so
// that the kernel's wait for one client overlaps the set-up of the next
// instead of waiting for one of go test's parallel slots (two on two
// cores). A subtest may so resume long after its flow died: every moment
// it checks was taken when it happened, by the goroutine that made the
// call or by the recorder, and no deadline set before t.Parallel is used
// after it.

// deadPeerConfig is what clients dial with in the dead-peer tests: the
// usual pairing UserTimeout = Idle + Interval*Count, compressed to seconds.
// With UserTimeout set, data a client happens to write while the flow is
// dead is given up on too.
var deadPeerConfig = keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2, UserTimeout: 3 * time.Second}

// deadPeerBound is deadPeerConfig's DetectionTime: how long after the
// last segment it received an idle connection is declared dead.
var deadPeerBound = detectionTime(deadPeerConfig)

// detectionTime returns the DetectionTime of c, which sets Idle, Interval
// and Count: no system default is read, and nothing can fail.
func detectionTime(c keepalive.Config) time.Duration {
	d, err := c.DetectionTime()
	if err != nil {
		panic(err)
	}
	return d
}

// cutFlow makes the flow of a connection the client holds dead, as a
// firewall that drops it does: a drop-all socket filter on the client's own
// socket discards every segment that arrives for it before TCP sees it, so
// the server's answers to keepalive probes, its data and its resets never
// reach the client. The server and every other connection are untouched,
// so the client can connect again.
//
// cutFlow first waits until the socket has nothing unacknowledged or
// unsent and has sent nothing for a moment, so that keepalive, not
// retransmission, is left to notice (a client that writes later still
// meets UserTimeout). It returns the time the socket last received a
// segment, by the kernel's own clock (TCP_INFO): the keepalive timer
// counts from there.
//
// Linux lets a process attach a classic filter to its own socket without
// privilege; where a kernel refuses (EPERM) the test is skipped with the
// reason, or fails when CI is set.
func cutFlow(t testing.TB, conn net.Conn) (last time.Time) {
	t.Helper()
	tc := tcpOf(t, conn)
	waitQuiet(t, tc)
	rc, err := tc.SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) { serr = attachDropAll(int(fd)) }))
	if errors.Is(serr, os.ErrPermission) {
		unavailable(t, fmt.Sprintf("cannot cut a flow: setsockopt SO_ATTACH_FILTER: %v (this kernel wants CAP_NET_ADMIN for it)", serr))
	}
	require.NoError(t, os.NewSyscallError("setsockopt SO_ATTACH_FILTER", serr))
	info := tcpInfo(t, tc)
	since := min(info.Last_data_recv, info.Last_ack_recv)
	return time.Now().Add(-time.Duration(since) * time.Millisecond)
}

// dropAll is a classic BPF program of one instruction, "ret #0": a socket
// it is attached to keeps no byte of any packet it receives.
var dropAll = []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}

func attachDropAll(fd int) error {
	prog := unix.SockFprog{Len: uint16(len(dropAll)), Filter: &dropAll[0]}
	return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
}

// tcpOf returns the *net.TCPConn that conn is or wraps through NetConn.
func tcpOf(t testing.TB, conn net.Conn) *net.TCPConn {
	t.Helper()
	for {
		w, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		conn = w.NetConn()
	}
	tc, ok := conn.(*net.TCPConn)
	require.True(t, ok, "want *net.TCPConn, got %T", conn)
	return tc
}

// tcpInfo reads TCP_INFO of tc's socket.
func tcpInfo(t testing.TB, tc *net.TCPConn) *unix.TCPInfo {
	t.Helper()
	rc, err := tc.SyscallConn()
	require.NoError(t, err)
	var info *unix.TCPInfo
	var gerr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}))
	require.NoError(t, os.NewSyscallError("getsockopt TCP_INFO", gerr))
	return info
}

// waitQuiet waits until tc's socket has no data unacknowledged or unsent
// and has sent none for quietTime: a client that answers what it last
// received (gRPC acknowledges data and pings with frames of its own) has
// done so.
func waitQuiet(t testing.TB, tc *net.TCPConn) {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		info := tcpInfo(t, tc)
		if info.Unacked == 0 && info.Notsent_bytes == 0 && time.Duration(info.Last_data_sent)*time.Millisecond >= quietTime {
			return
		}
		require.Less(t, time.Since(start), 10*time.Second, "%d segments unacknowledged, %d bytes unsent", info.Unacked, info.Notsent_bytes)
	}
}

// quietTime is how long a socket must have sent nothing before its flow is
// cut.
const quietTime = 100 * time.Millisecond

// waitSent waits until tc's socket has had more than acked bytes
// acknowledged: the request a client was asked to send has reached the
// server. It returns the new count.
func waitSent(t testing.TB, tc *net.TCPConn, acked uint64) uint64 {
	t.Helper()
	for start := time.Now(); ; time.Sleep(time.Millisecond) {
		if n := tcpInfo(t, tc).Bytes_acked; n > acked {
			return n
		}
		require.Less(t, time.Since(start), 10*time.Second, "nothing sent beyond %d bytes", acked)
	}
}

// bytesAcked returns how many bytes tc's socket has had acknowledged.
func bytesAcked(t testing.TB, conn net.Conn) uint64 {
	t.Helper()
	return tcpInfo(t, tcpOf(t, conn)).Bytes_acked
}

// outcome is how a call an application had waiting ended: its error, and
// when it returned.
type outcome struct {
	err error
	at  time.Time
}

// goCall runs call, the application's blocking call, in a goroutine and
// delivers how it ended.
func goCall(call func() error) <-chan outcome {
	done := make(chan outcome, 1)
	go func() {
		err := call()
		done <- outcome{err, time.Now()}
	}()
	return done
}

// callAndCut starts call, the application's blocking call, on conn;
// waits until the peer has acknowledged what it sent, so that the call is
// waiting on the peer; and then cuts the flow (cutFlow). It returns how the
// call will end, and when the flow last carried a segment.
func callAndCut(t testing.TB, conn net.Conn, call func() error) (done <-chan outcome, last time.Time) {
	t.Helper()
	acked := bytesAcked(t, conn)
	done = goCall(call)
	waitSent(t, tcpOf(t, conn), acked)
	return done, cutFlow(t, conn)
}

// await returns how the call behind done ended, failing the test if it has
// not within awaitTimeout. The subtest may run long after the flow died
// (it waits for a parallel slot), so the time is the one goCall took when
// the call returned, and the timeout only keeps a call that never returns
// from hanging the test.
func await(t testing.TB, done <-chan outcome) outcome {
	t.Helper()
	select {
	case o := <-done:
		return o
	case <-time.After(awaitTimeout):
		require.FailNow(t, "the call is still waiting", "keepalive's bound is %v", deadPeerBound)
		return outcome{}
	}
}

// awaitTimeout bounds each wait of a dead-peer test for what the
// application sees.
const awaitTimeout = 30 * time.Second

// noticed logs what the application saw, and when, as a "dead peer:" line,
// and checks the time against deadPeerBound: from last, the moment the flow
// last carried a segment to the socket, to at, the moment the application
// saw it die.
func noticed(t testing.TB, client, sees string, last, at time.Time) {
	t.Helper()
	noticedWithin(t, client, sees, last, at, deadPeerBound)
}

// noticedWithin is noticed for a socket whose Config a client changed, with
// that Config's bound.
func noticedWithin(t testing.TB, client, sees string, last, at time.Time, bound time.Duration) {
	t.Helper()
	took := at.Sub(last)
	// The kernel's timer fires late by up to a jiffy per probe on a loaded
	// machine, and the client takes a moment to act on the error.
	limit := bound*115/100 + 300*time.Millisecond
	t.Logf("dead peer: client=%s sees=%q after=%.3fs bound=%v ratio=%.3f", client, sees, took.Seconds(), bound, float64(took)/float64(bound))
	assert.GreaterOrEqual(t, took, bound, "seen %v before keepalive's bound %v: something else ended it", bound-took, bound)
	assert.LessOrEqual(t, took, limit, "seen %v after the limit %v (bound %v)", took-limit, limit, bound)
}

// redialAfter waits until rec has dialed more than n times and returns the
// first new dial, failing the test if none comes within awaitTimeout.
func (r *recorder) redialAfter(t testing.TB, n int) dial {
	t.Helper()
	return r.dialAfter(t, n, time.Now().Add(awaitTimeout))
}

// waitDial waits for the client's first dial through rec.
func (r *recorder) waitDial(t testing.TB) dial {
	t.Helper()
	return r.dialAfter(t, 0, time.Now().Add(queryTimeout))
}

// dialAfter waits until rec has dialed more than n times and returns the
// first new dial, failing the test if none comes before deadline.
func (r *recorder) dialAfter(t testing.TB, n int, deadline time.Time) dial {
	t.Helper()
	for {
		r.mu.Lock()
		dials := append([]dial(nil), r.dials...)
		errs := append([]error(nil), r.errs...)
		r.mu.Unlock()
		require.Empty(t, errs, "dials through the recorder")
		if len(dials) > n {
			return dials[n]
		}
		require.True(t, time.Now().Before(deadline), "%d dials, no more by %v", n, deadline.Format(time.StampMilli))
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDeadPeer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		client string
		run    func(t *testing.T)
	}{
		{"pgx", deadPeerPgx},
		{"lib/pq", deadPeerLibPQ},
		{"go-sql-driver/mysql", deadPeerMySQL},
		{"go-redis", deadPeerRedis},
		{"gRPC", deadPeerGRPC},
		{"net/http", deadPeerHTTP},
		{"nats.go", deadPeerNATS},
		{"franz-go", deadPeerKafka},
		{"x/crypto/ssh", deadPeerSSH},
		{"WebSocket", deadPeerWebSocket},
		{"amqp091-go", deadPeerRabbitMQ},
		{"etcd clientv3", deadPeerEtcd},
		{"net/http Server", deadPeerHTTPServer},
		{"gRPC server", deadPeerGRPCServer},
	}
	for _, tt := range tests {
		t.Run(tt.client, tt.run)
	}
}

// The idle dead-peer tests cut the flow of a connection idle in a client's
// pool, the way a firewall's nightly clean-up finds most connections, and
// show what the application's next call sees once keepalive has closed it:
// an error, or nothing because the client checks an idle connection (or
// was told by its reader) and dials again. The time measured is when the
// socket closed, or when the client closed it on hearing of the death.
func TestDeadPeerIdle(t *testing.T) {
	t.Parallel()
	tests := []struct {
		client string
		run    func(t *testing.T)
	}{
		{"pgx", idlePgx},
		{"pgxpool", idlePgxpool},
		{"lib/pq", idleLibPQ},
		{"go-sql-driver/mysql", idleMySQL},
		{"go-redis", idleRedis},
		{"net/http", idleHTTP},
		{"gomemcache", idleMemcached},
	}
	for _, tt := range tests {
		t.Run(tt.client, tt.run)
	}
}

// sqlIdleDeath is idleDeath for a database/sql pool of one connection:
// the query after the cut fails on the dead connection, and database/sql
// dials again for the next.
func sqlIdleDeath(t *testing.T, client string, rec *recorder, db *sql.DB) {
	t.Helper()
	db.SetMaxOpenConns(1)
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		_, err := db.ExecContext(ctx, "SELECT 1")
		return err
	}
	err := idleDeath(t, client, rec, call, func(err error) string {
		return fmt.Sprintf("next query: %v; database/sql dialed again", err)
	})
	assert.NoError(t, err, "the next query")
	assert.Len(t, rec.Dials(t), 2, "dials")
}

// idleDeath makes one call, so that the client keeps a connection from rec
// idle, cuts that connection's flow, waits until it is closed, and makes
// the call again. It returns the second call's error and logs what the
// application saw, with sees describing it, against the bound.
func idleDeath(t *testing.T, client string, rec *recorder, call func() error, sees func(err error) string) error {
	t.Helper()
	require.NoError(t, call(), "the first call")
	d := rec.only(t)
	last := cutFlow(t, d.Conn)
	closed := watchClosed(tcpOf(t, d.Conn))
	t.Parallel()

	var closedAt time.Time
	select {
	case c := <-closed:
		require.NoError(t, c.err, "watching the socket")
		closedAt = c.at
	case <-time.After(awaitTimeout):
		require.FailNow(t, "the socket is still open", "%v after the flow's last segment", time.Since(last))
	}
	err := call()
	noticed(t, client+" (idle)", sees(err), last, closedAt)
	return err
}

// tcpClose is TCP_CLOSE, the state TCP_INFO reports for a socket the
// kernel has closed (Linux include/net/tcp_states.h).
const tcpClose = 7

// watchClosed polls tc's socket every millisecond, in a goroutine, until
// the kernel has closed it or the client has closed the connection, and
// delivers when it saw that, or why it could not tell.
func watchClosed(tc *net.TCPConn) <-chan outcome {
	done := make(chan outcome, 1)
	go func() {
		rc, err := tc.SyscallConn()
		if err != nil {
			done <- outcome{err: err}
			return
		}
		deadline := time.Now().Add(awaitTimeout)
		for time.Now().Before(deadline) {
			var info *unix.TCPInfo
			var gerr error
			err := rc.Control(func(fd uintptr) {
				info, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			})
			switch {
			case errors.Is(err, net.ErrClosed):
				// The client closed it, having heard of the death.
				done <- outcome{at: time.Now()}
				return
			case err != nil:
				done <- outcome{err: err}
				return
			case gerr != nil:
				done <- outcome{err: os.NewSyscallError("getsockopt TCP_INFO", gerr)}
				return
			case info.State == tcpClose:
				done <- outcome{at: time.Now()}
				return
			}
			time.Sleep(time.Millisecond)
		}
		done <- outcome{err: fmt.Errorf("still open after %v", awaitTimeout)}
	}()
	return done
}
