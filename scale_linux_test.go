package keepalive_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// TestVanishedPeersAtScale opens 10,000 connections on loopback, half
// dialed through one keepalive.Dialer and half accepted from one
// keepalive.Listen, and shows that
//
//   - the library keeps nothing per live connection: the goroutines and the
//     heap grow by no more than for the same connections made with net.Dial
//     and net.Listen;
//   - when every peer vanishes at once, every connection is declared dead,
//     its blocked Read failing with ETIMEDOUT, within bound*1.2 of the last
//     thing it received: the kernel does the work.
//
// The far ends live in a second process, this test run again as
// servePeers, so that each process needs 10,000 descriptors rather than one
// needing 20,000, and so that the counts cover this library's ends alone.
// The test does not run in parallel with others, whose goroutines and heap
// would blur the counts, and not with -short.
func TestVanishedPeersAtScale(t *testing.T) {
	if os.Getenv(scalePeersEnv) == "1" {
		servePeers(t)
		return
	}
	if testing.Short() {
		t.Skip("skipped with -short: opens 10,000 loopback connections")
	}
	const n = 10000
	skipUnlessBlackhole(t)
	raiseNoFile(t, n+1024)
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	c := keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 2}
	bound := detectionTime(t, c, sys)
	limit := bound * 120 / 100
	peers := startPeers(t)

	// The standard library's cost, to compare with, after a few
	// connections both ways so that neither count includes what is set
	// up once.
	var std net.Dialer
	d := &keepalive.Dialer{Config: c}
	stdListen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	kaListen := func() net.Listener {
		ln, err := keepalive.Listen("tcp", "127.0.0.1:0", c)
		require.NoError(t, err)
		t.Cleanup(func() { ln.Close() })
		return ln
	}
	for _, warm := range []struct {
		ln   net.Listener
		dial func(context.Context, string, string) (net.Conn, error)
	}{{stdListen(), std.DialContext}, {kaListen(), d.DialContext}} {
		_, closeWarm, _ := openConns(t, peers, 100, warm.ln, warm.dial)
		warm.ln.Close()
		closeWarm()
		peers.do(t, "close")
	}
	ln := stdListen()
	_, closeStd, stdCost := openConns(t, peers, n, ln, std.DialContext)
	require.NoError(t, ln.Close())
	closeStd()
	peers.do(t, "close")

	kln := kaListen()
	conns, _, cost := openConns(t, peers, n, kln, d.DialContext)
	require.NoError(t, kln.Close())
	t.Logf("scale: conns=%d growth per connection: keepalive goroutines=%+.4f heap-alloc=%+.1fB heap-inuse=%+.1fB; net.Dial and net.Listen goroutines=%+.4f heap-alloc=%+.1fB heap-inuse=%+.1fB",
		n, cost.goroutines, cost.heapAlloc, cost.heapInuse, stdCost.goroutines, stdCost.heapAlloc, stdCost.heapInuse)
	assert.LessOrEqual(t, cost.goroutines, stdCost.goroutines, "goroutines per connection, against the standard library")
	// HeapAlloc after a collection counts the bytes of live objects. It
	// varies by about 2 bytes a connection from run to run; anything kept
	// per connection (a wrapper, a map entry, a closure) would add 16 or
	// more.
	assert.LessOrEqual(t, cost.heapAlloc, stdCost.heapAlloc+8, "live heap bytes per connection, against the standard library")
	// HeapInuse counts whole spans of 8KB pages; it moves by a few dozen
	// pages either way, about 10 bytes a connection.
	assert.LessOrEqual(t, cost.heapInuse, stdCost.heapInuse+32, "heap in use per connection, against the standard library")
	assert.Equal(t, expect(t, c), readKernel(t, conns[0]), "dialed end")
	assert.Equal(t, expect(t, c), readKernel(t, conns[n-1]), "accepted end")

	// The test's own goroutines: one blocked Read per connection.
	type result struct {
		at  time.Time
		err error
	}
	results := make([]result, n)
	var left atomic.Int64
	left.Store(n)
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := conn.Read(make([]byte, 1))
			results[i] = result{time.Now(), err}
			left.Add(-1)
		}()
	}

	// Every peer vanishes; then, when no peer can answer any more, the
	// time each connection last received anything.
	start := time.Now()
	how := peers.do(t, "vanish")
	t.Logf("scale: peers vanished in %v: %s", time.Since(start), how)
	lastRecv := make([]time.Time, n)
	for i, conn := range conns {
		lastRecv[i] = lastReceipt(t, conn)
	}

	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Until(start.Add(limit + 5*time.Second))):
		t.Errorf("%d of %d connections still open %v after their peers vanished", left.Load(), n, time.Since(start))
		for _, conn := range conns {
			conn.Close()
		}
		<-done
	}

	for s, side := range sides {
		// conns holds the dialed ends first, then the accepted ones.
		var measured []time.Duration
		var failed []string
		for i := s * n / 2; i < (s+1)*n/2; i++ {
			m := results[i].at.Sub(lastRecv[i])
			measured = append(measured, m)
			if !errors.Is(results[i].err, syscall.ETIMEDOUT) || m < bound-25*time.Millisecond || m > limit {
				failed = append(failed, fmt.Sprintf("%v after %v", results[i].err, m))
			}
		}
		slices.Sort(measured)
		worst := measured[len(measured)-1]
		t.Logf("scale: side=%s conns=%d bound=%v measured min=%.3fs median=%.3fs max=%.3fs max-ratio=%.3f",
			side, len(measured), bound, measured[0].Seconds(), measured[len(measured)/2].Seconds(), worst.Seconds(), float64(worst)/float64(bound))
		// The lower end allows for TCP_INFO's clock, which counts whole
		// jiffies (up to 10ms) in whole milliseconds.
		assert.Empty(t, failed, "%s ends not failing with ETIMEDOUT within [%v, %v] of their last receipt", side, bound-25*time.Millisecond, limit)
	}
}

// lastReceipt returns when conn last received anything, by the kernel's
// clock as the keepalive timer reads it: the later of the last data and
// the last ACK, from TCP_INFO, in whole milliseconds of whole jiffies. A
// reading the scheduler delayed by more than a millisecond is taken again.
func lastReceipt(t testing.TB, conn net.Conn) time.Time {
	t.Helper()
	for {
		before := time.Now()
		info := tcpInfo(t, conn)
		if time.Since(before) < time.Millisecond {
			return before.Add(-tcpInfoMs(min(info.Last_data_recv, info.Last_ack_recv)))
		}
	}
}

// connCost is what a set of connections adds to the process, per connection.
type connCost struct {
	goroutines float64
	heapAlloc  float64 // bytes of live objects
	heapInuse  float64 // bytes of spans in use
}

// openConns makes n connections between this process and peers: n/2
// dialed to peers with dial, then n/2 dialed by peers and accepted from ln.
// It returns this process's ends, the dialed ones first, a function that
// resets and closes them all, which also runs at cleanup, and how much they
// grew the goroutine count and the heap, per connection. The goroutines the
// test itself uses are running before the first count and still running at
// the second.
func openConns(t *testing.T, peers *peers, n int, ln net.Listener, dial func(ctx context.Context, network, address string) (net.Conn, error)) (conns []net.Conn, closeAll func(), c connCost) {
	t.Helper()
	const workers = 4
	dialed := make([]net.Conn, n/2)
	accepted := make([]net.Conn, 0, n-n/2)
	errs := make([]error, workers+1)
	start, finish := make(chan struct{}), make(chan struct{})
	release := sync.OnceFunc(func() { close(finish) })
	defer release()
	var wg sync.WaitGroup
	wg.Add(workers + 1)
	go func() {
		<-start
		for len(accepted) < cap(accepted) {
			conn, err := ln.Accept()
			if err != nil {
				errs[workers] = err
				break
			}
			accepted = append(accepted, conn)
		}
		wg.Done()
		<-finish
	}()
	// Dials give up if the peers stop accepting, instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for w := range workers {
		go func() {
			<-start
			for i := w; i < len(dialed); i += workers {
				conn, err := dial(ctx, "tcp", peers.addr)
				if err != nil {
					errs[w] = err
					break
				}
				dialed[i] = conn
			}
			wg.Done()
			<-finish
		}()
	}
	dialCmd := fmt.Sprintf("dial %s %d", ln.Addr(), cap(accepted))
	waitCmd := fmt.Sprintf("wait %d", len(dialed))

	before := countProcess()
	close(start)
	peers.do(t, dialCmd)
	wg.Wait()
	peers.do(t, waitCmd)
	after := countProcess()
	release()

	conns = append(dialed, accepted...)
	closeAll = sync.OnceFunc(func() {
		for _, conn := range conns {
			if conn != nil {
				closeNow(conn)
			}
		}
	})
	t.Cleanup(closeAll)
	require.NoError(t, errors.Join(errs...))
	per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / float64(n) }
	return conns, closeAll, connCost{
		goroutines: float64(after.goroutines-before.goroutines) / float64(n),
		heapAlloc:  per(after.heapAlloc, before.heapAlloc),
		heapInuse:  per(after.heapInuse, before.heapInuse),
	}
}

type procCounts struct {
	goroutines int
	heapAlloc  uint64
	heapInuse  uint64
}

// usage collects garbage and returns the goroutine count, the bytes of
// live heap objects and the bytes of heap spans in use. The second
// collection frees what the first left in sync.Pool victim caches.
func countProcess() procCounts {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return procCounts{runtime.NumGoroutine(), m.HeapAlloc, m.HeapInuse}
}

// closeNow closes conn with a reset, leaving no TIME_WAIT behind.
func closeNow(conn net.Conn) {
	conn.(*net.TCPConn).SetLinger(0)
	conn.Close()
}

// raiseNoFile raises RLIMIT_NOFILE to at least want for the rest of the
// test, or skips it if that is not permitted.
func raiseNoFile(t *testing.T, want uint64) {
	t.Helper()
	var orig unix.Rlimit
	require.NoError(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &orig))
	if orig.Cur >= want {
		return
	}
	lim := orig
	lim.Cur = want
	lim.Max = max(lim.Max, want)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		if errors.Is(err, os.ErrPermission) {
			skipOutsideCI(t, "needs %d file descriptors; RLIMIT_NOFILE is %d (hard %d) and raising it is not permitted: %v", want, orig.Cur, orig.Max, err)
		}
		require.NoError(t, err, "setrlimit RLIMIT_NOFILE")
	}
	t.Cleanup(func() { unix.Setrlimit(unix.RLIMIT_NOFILE, &orig) })
}

// scalePeersEnv, set to 1, makes TestVanishedPeersAtScale serve as the
// peer process.
const scalePeersEnv = "KEEPALIVE_TEST_SCALE_PEERS"

// peers is the process that holds the far ends of TestVanishedPeersAtScale's
// connections.
type peers struct {
	addr    string // where it accepts connections
	in      io.Writer
	replies *bufio.Reader
	log     string // its output
}

// startPeers starts this test binary as the peer process, stopped at
// cleanup after it has reset every connection it holds.
func startPeers(t *testing.T) *peers {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^TestVanishedPeersAtScale$")
	cmd.Env = append(os.Environ(), scalePeersEnv+"=1")
	p := &peers{log: filepath.Join(t.TempDir(), "peers.log")}
	logf, err := os.Create(p.log)
	require.NoError(t, err)
	t.Cleanup(func() { logf.Close() })
	cmd.Stdout, cmd.Stderr = logf, logf
	r, w, err := os.Pipe()
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	cmd.ExtraFiles = []*os.File{w}
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	w.Close()
	t.Cleanup(func() {
		in.Close()
		if err := cmd.Wait(); err != nil {
			b, _ := os.ReadFile(p.log)
			t.Errorf("peer process: %v\n%s", err, b)
		}
	})
	p.in, p.replies = in, bufio.NewReader(r)
	p.addr = p.reply(t)
	return p
}

// do sends a command to the peer process and returns its reply.
func (p *peers) do(t *testing.T, cmd string) string {
	t.Helper()
	_, err := fmt.Fprintln(p.in, cmd)
	require.NoError(t, err)
	return p.reply(t)
}

func (p *peers) reply(t *testing.T) string {
	t.Helper()
	line, err := p.replies.ReadString('\n')
	if err != nil {
		b, _ := os.ReadFile(p.log)
		require.NoError(t, err, "peer process output:\n%s", b)
	}
	line = strings.TrimSuffix(line, "\n")
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		require.Fail(t, "peer process: "+msg)
	}
	line, _ = strings.CutPrefix(line, "ok")
	return strings.TrimSpace(line)
}

// servePeers is TestVanishedPeersAtScale in its peer process, started by
// startPeers. It holds the far ends of the connections, with keepalive
// off: it accepts on a loopback listener whose address it replies first,
// and takes commands on standard input, one a line, replying "ok ..." or
// "error ..." on descriptor 3:
//
//	dial ADDR N   dial N connections to ADDR
//	wait N        wait until N connections have been accepted
//	vanish        blackhole every connection (blackholeAll)
//	close         reset and close every connection
//
// At the end of its input it resets every connection and exits.
func servePeers(t *testing.T) {
	replies := os.NewFile(3, "replies")
	reply := func(format string, args ...any) {
		_, err := fmt.Fprintf(replies, format+"\n", args...)
		require.NoError(t, err)
	}
	lc := net.ListenConfig{KeepAlive: -1}
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()

	var mu sync.Mutex
	var conns []net.Conn
	var accepted atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			accepted.Add(1)
		}
	}()
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		for _, conn := range conns {
			closeNow(conn)
		}
		conns = nil
		accepted.Store(0)
	}
	defer closeAll()

	reply("ok %s", ln.Addr())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "dial":
			n, err := strconv.Atoi(f[2])
			require.NoError(t, err)
			if err := peersDial(f[1], n, &mu, &conns); err != nil {
				reply("error %v", err)
				continue
			}
		case len(f) == 2 && f[0] == "wait":
			n, err := strconv.ParseInt(f[1], 10, 64)
			require.NoError(t, err)
			deadline := time.Now().Add(time.Minute)
			for accepted.Load() < n && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if got := accepted.Load(); got < n {
				reply("error accepted %d of %d connections", got, n)
				continue
			}
		case len(f) == 1 && f[0] == "vanish":
			mu.Lock()
			all := slices.Clone(conns)
			mu.Unlock()
			reply("ok %d with %s", len(all), blackholeAll(t, all))
			continue
		case len(f) == 1 && f[0] == "close":
			closeAll()
		default:
			reply("error unknown command %q", sc.Text())
			continue
		}
		reply("ok")
	}
	require.NoError(t, sc.Err())
}

// peersDial dials n connections to addr with keepalive off, from a few
// goroutines, and adds them to conns.
func peersDial(addr string, n int, mu *sync.Mutex, conns *[]net.Conn) error {
	const workers = 4
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				conn, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					errs[w] = err
					return
				}
				mu.Lock()
				*conns = append(*conns, conn)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
