package idletimeout_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/idletimeout"
	"github.com/keepalive-go/keepalive/internal/netlab"
)

// labTag marks the network namespaces of these tests.
const labTag = "kaidle"

// labServer is a TCP server in the lab's server namespace that accepts
// every connection, reads it until it ends, and counts what it sees.
type labServer struct {
	addr                    string
	mu                      sync.Mutex
	open, maxOpen, accepted int
	bytes                   int
	wg                      sync.WaitGroup
}

// serverOptions says how a labServer treats its connections.
type serverOptions struct {
	// closeAfter, if not zero, makes the server end each connection
	// after that long without data, as servers with an idle or login
	// timeout do: with a FIN, or a reset if reset is set.
	closeAfter time.Duration
	reset      bool
	// greet makes the server send a line as soon as it accepts a
	// connection, as MySQL and SSH servers do.
	greet bool
	// keepAlive, if not zero, makes the accepted connections send
	// keepalive probes after that long of silence, as Go servers do after
	// 15s by default; zero leaves keepalive off.
	keepAlive time.Duration
}

// startServer starts a labServer that treats its connections as o says.
// The listener and every connection are closed at cleanup.
func startServer(t *testing.T, lab *netlab.Lab, o serverOptions) *labServer {
	t.Helper()
	closeAfter, keepAlive := o.closeAfter, o.keepAlive
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		lc := net.ListenConfig{KeepAlive: -1}
		if keepAlive > 0 {
			lc.KeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: keepAlive, Interval: keepAlive, Count: 9}
		}
		var err error
		ln, err = lc.Listen(context.Background(), "tcp", netip.AddrPortFrom(lab.ServerAddr(), 0).String())
		return err
	}))
	s := &labServer{addr: ln.Addr().String()}
	var conns sync.Map
	t.Cleanup(func() {
		ln.Close()
		conns.Range(func(c, _ any) bool { c.(net.Conn).Close(); return true })
		s.wg.Wait()
	})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Store(c, nil)
			s.mu.Lock()
			s.accepted++
			s.open++
			s.maxOpen = max(s.maxOpen, s.open)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					s.mu.Lock()
					s.open--
					s.mu.Unlock()
				}()
				if o.reset {
					c.(*net.TCPConn).SetLinger(0)
				}
				if o.greet {
					c.Write([]byte("hello\r\n"))
				}
				buf := make([]byte, 64)
				for {
					if closeAfter > 0 {
						c.SetReadDeadline(time.Now().Add(closeAfter))
					}
					n, err := c.Read(buf)
					s.mu.Lock()
					s.bytes += n
					s.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *labServer) stats() (open, maxOpen, accepted, bytes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.maxOpen, s.accepted, s.bytes
}

// labDial dials from the lab's client namespace, with the standard
// library's keepalive off: Find sets it.
func labDial(lab *netlab.Lab) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var c net.Conn
		err := lab.Client(func() error {
			d := net.Dialer{KeepAlive: -1}
			var err error
			c, err = d.DialContext(ctx, network, address)
			return err
		})
		return c, err
	}
}

// searchGoroutines counts the goroutines of a search still running.
func searchGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "idletimeout.(*netDriver)") || strings.Contains(g, "idletimeout.run(") {
			n++
		}
	}
	return n
}

// assertSearchesEnded checks that the goroutines a search started end
// right after it returns. They have done their work when Find returns, but
// a goroutine that has just called its WaitGroup's Done is still on its way
// out for a moment, longer under the race detector.
func assertSearchesEnded(t *testing.T) {
	t.Helper()
	assert.True(t, waitFor(time.Second, func() bool { return searchGoroutines() == 0 }),
		"%d goroutines of a search still running 1s after it returned", searchGoroutines())
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestFindLab measures paths in the lab whose truth is known: firewalls
// that forget idle flows after various timeouts and drop or reset them, a
// lossy one, servers that end idle connections by FIN or reset, with or
// without a greeting first, one that sends keepalive probes of its own,
// and a path that keeps flows longer than Max. Each answer is checked
// against the truth, and the time it took against the bound of the package
// documentation:
//
//	T + max(1s, T/50) + 2·Count·Interval + 0.5s + the dials and the
//	kernel timers' lateness,
//
// for which the check allows 0.5s, and the dials of 331 flows, one every
// 5ms, 1.7s more. A reset is re-tested too, by a flow that probes after
// the same silence, so it comes Count·Interval + 0.5s after the first
// tested silence past T, and the same 0.5s. A SYN the client sends again
// (its first is lost: the lossy path, or a lab whose links are still
// coming up on a loaded machine) delays its connection by 1s, and a death
// that was lost packets costs a re-test: the check allows for each it
// counts.
func TestFindLab(t *testing.T) {
	// Two minutes of waiting, beside the sweeps.
	t.Parallel()
	const cv = 2 * time.Second // Count·Interval
	tests := []struct {
		name     string
		lab      netlab.Options
		server   serverOptions
		o        idletimeout.Options
		cause    idletimeout.Cause
		end      idletimeout.End
		spoke    bool
		survived time.Duration
		died     time.Duration // for the server's own ends: within 50ms before to 200ms after
		heard    time.Duration
		within   time.Duration // the most the answer may take
	}{
		{
			name: "drop after 3s", lab: netlab.Options{ConntrackTimeout: 3 * time.Second},
			o: idletimeout.Options{Max: 30 * time.Second}, cause: idletimeout.CauseDrop, end: idletimeout.EndUnanswered,
			survived: 2 * time.Second, died: 3 * time.Second, within: 3*time.Second + time.Second + 2*cv + time.Second,
		},
		{
			// The default Max: 331 flows, and the answer still comes
			// after the timeout, not after Max.
			name: "drop after 8s, Max 2h", lab: netlab.Options{ConntrackTimeout: 8 * time.Second},
			cause: idletimeout.CauseDrop, end: idletimeout.EndUnanswered,
			survived: 7 * time.Second, died: 8 * time.Second, within: 8*time.Second + time.Second + 2*cv + time.Second + 1700*time.Millisecond,
		},
		{
			name: "drop after 17s", lab: netlab.Options{ConntrackTimeout: 17 * time.Second},
			o: idletimeout.Options{Max: 40 * time.Second}, cause: idletimeout.CauseDrop, end: idletimeout.EndUnanswered,
			survived: 16 * time.Second, died: 17 * time.Second, within: 17*time.Second + time.Second + 2*cv + time.Second,
		},
		{
			// Past 100s the ladder steps by 2s: 124s, 126s.
			name: "drop after 125s", lab: netlab.Options{ConntrackTimeout: 125 * time.Second},
			o: idletimeout.Options{Max: 3 * time.Minute}, cause: idletimeout.CauseDrop, end: idletimeout.EndUnanswered,
			survived: 124 * time.Second, died: 126 * time.Second, within: 125*time.Second + 2500*time.Millisecond + 2*cv + time.Second,
		},
		{
			name: "reset after 6s", lab: netlab.Options{ConntrackTimeout: 6 * time.Second, Reset: true},
			o: idletimeout.Options{Max: 30 * time.Second}, cause: idletimeout.CauseReset, end: idletimeout.EndProbeReset,
			survived: 5 * time.Second, died: 6 * time.Second, within: 6*time.Second + cv + time.Second,
		},
		{
			name: "drop after 10s, 3% loss", lab: netlab.Options{ConntrackTimeout: 10 * time.Second, Loss: 3},
			o: idletimeout.Options{Max: 30 * time.Second}, cause: idletimeout.CauseDrop, end: idletimeout.EndUnanswered,
			survived: 9 * time.Second, died: 10 * time.Second, within: 10*time.Second + time.Second + 2*cv + time.Second,
		},
		{
			// The server counts 7s from its accept, a little before
			// the client's connect returns.
			name: "server closes after 7s", server: serverOptions{closeAfter: 7 * time.Second},
			o: idletimeout.Options{Max: 30 * time.Second}, cause: idletimeout.CauseServerClose, end: idletimeout.EndFIN,
			survived: 7 * time.Second, died: 7 * time.Second, within: 7*time.Second + 500*time.Millisecond,
		},
		{
			// As MariaDB ends a connection that does not log in: a
			// greeting, then a reset. A flow answered before it is
			// reset the same silence after its greeting, not after
			// its answer: the server's clock, not the path's.
			name: "server greets, then resets after 7s", server: serverOptions{closeAfter: 7 * time.Second, reset: true, greet: true},
			lab: netlab.Options{ConntrackTimeout: 20 * time.Second},
			o:   idletimeout.Options{Max: 30 * time.Second}, cause: idletimeout.CauseServerClose, end: idletimeout.EndReset, spoke: true,
			survived: 7 * time.Second, died: 7 * time.Second, within: 7*time.Second + 500*time.Millisecond,
		},
		{
			// The reset comes a few milliseconds after the probe of the
			// flow tested at 7s, likely before the answer is polled: a
			// death at the server's own timeout is the server's, and no
			// flow is tested again.
			name: "server resets 3ms after a probe", server: serverOptions{closeAfter: 7003 * time.Millisecond, reset: true},
			lab: netlab.Options{ConntrackTimeout: 20 * time.Second},
			o:   idletimeout.Options{Max: 30 * time.Second}, cause: idletimeout.CauseServerClose, end: idletimeout.EndReset,
			survived: 7 * time.Second, died: 7003 * time.Millisecond, within: 7*time.Second + 500*time.Millisecond,
		},
		{
			// The firewall forgets first: its timeout is measured, not
			// the server's.
			name: "server resets after 9s, drop after 5s", server: serverOptions{closeAfter: 9 * time.Second, reset: true, greet: true},
			lab: netlab.Options{ConntrackTimeout: 5 * time.Second},
			o:   idletimeout.Options{Max: 30 * time.Second}, cause: idletimeout.CauseDrop, end: idletimeout.EndUnanswered,
			survived: 4 * time.Second, died: 5 * time.Second, within: 5*time.Second + time.Second + 2*cv + time.Second,
		},
		{
			// Go's default for accepted connections: probes after
			// 15s. The firewall would forget after 30s, but never
			// sees that silence.
			name: "server probes after 15s", lab: netlab.Options{ConntrackTimeout: 30 * time.Second}, server: serverOptions{keepAlive: 15 * time.Second},
			o: idletimeout.Options{Max: 40 * time.Second}, cause: idletimeout.CauseNone,
			// Heard at 16s and 17s, and again within as long (and
			// listenSlack, 0.5s) after.
			survived: 15 * time.Second, heard: 16 * time.Second, within: 2*17*time.Second + time.Second,
		},
		{
			name: "kept past Max", lab: netlab.Options{ConntrackTimeout: 60 * time.Second},
			o: idletimeout.Options{Max: 4 * time.Second}, cause: idletimeout.CauseNone,
			survived: 4 * time.Second, within: 4*time.Second + 500*time.Millisecond,
		},
		{
			// 8 flows: 6 tests a pass, every 5th of the 30 points, then
			// the points between the bounds.
			name: "drop after 9s, 8 flows", lab: netlab.Options{ConntrackTimeout: 9 * time.Second},
			o: idletimeout.Options{Max: 30 * time.Second, Flows: 8}, cause: idletimeout.CauseDrop, end: idletimeout.EndUnanswered,
			survived: 8 * time.Second, died: 9 * time.Second, within: 2 * (10*time.Second + 5*time.Second),
		},
	}
	// The cases wait at the same time; the goroutines of their searches
	// are counted once all have returned.
	t.Run("paths", func(t *testing.T) {
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				t.Parallel()
				tt.lab.Tag = labTag
				lab := netlab.New(t, tt.lab)
				srv := startServer(t, lab, tt.server)
				tt.o.Dial = labDial(lab)
				var reports []idletimeout.Progress
				tt.o.Progress = func(p idletimeout.Progress) { reports = append(reports, p) }
				flows, planned, err := idletimeout.Plan(tt.o)
				require.NoError(t, err)

				r, err := idletimeout.Find(context.Background(), srv.addr, tt.o)
				require.NoError(t, err)
				syns := lab.ClientStat("TcpExt:TCPSynRetrans")
				within := tt.within + time.Duration(syns)*time.Second + time.Duration(r.Spurious)*5*time.Second
				if extra := r.Passes - planned; extra > 0 {
					// A flow lost to a lost packet rather than the
					// path voids its point, and the search takes a
					// pass more to test it again.
					within += time.Duration(extra) * tt.within
				}
				t.Logf("lab: %s: survived %v, died %v, cause %v, end %v, spoke %v, heard %v, in %v (the most allowed %v); %d connections, %d passes, %d re-tests, %d spurious, %d unaccepted, %d refused, %d resent; firewall lost %d packets, %d SYNs sent again",
					tt.name, r.Survived, r.Died, r.Cause, r.End, r.Spoke, r.Heard, r.Elapsed.Round(time.Millisecond), within, r.Flows, r.Passes, r.Retests, r.Spurious, r.Unaccepted, r.Refused, r.Resent, lab.Lost(), syns)

				assert.Equal(t, tt.cause, r.Cause, "cause")
				assert.Equal(t, tt.end, r.End, "end")
				assert.Equal(t, tt.spoke, r.Spoke, "spoke")
				if tt.cause == idletimeout.CauseServerClose && r.Died < tt.survived {
					// The server counts from its accept, which may
					// come a moment before the client's connect
					// returns: the flow tested at the server's
					// timeout is then ended a moment short of it,
					// and the longest silence kept is the step
					// before.
					assert.Equal(t, tt.survived-time.Second, r.Survived, "survived, the server's end %v short of %v", tt.survived-r.Died, tt.survived)
				} else {
					assert.Equal(t, tt.survived, r.Survived, "survived")
				}
				if tt.end == idletimeout.EndFIN || tt.end == idletimeout.EndReset {
					assert.GreaterOrEqual(t, r.Died, tt.died-50*time.Millisecond, "died")
					assert.LessOrEqual(t, r.Died, tt.died+200*time.Millisecond, "died")
				} else {
					assert.Equal(t, tt.died, r.Died, "died")
				}
				assert.Equal(t, tt.heard, r.Heard, "heard")
				assert.Zero(t, r.Unaccepted, "unaccepted")
				if tt.cause == idletimeout.CauseServerClose {
					assert.Zero(t, r.Retests, "re-tests: no flow the server ended is a suspect")
				}
				assert.Zero(t, r.Refused, "refused")
				assert.LessOrEqual(t, r.Elapsed, within, "time to the answer")
				assert.Equal(t, srv.addr, r.Address)

				_, maxOpen, accepted, bytes := srv.stats()
				assert.Zero(t, bytes, "application data received by the server")
				assert.Equal(t, r.Flows, accepted, "connections the server accepted")
				if r.Passes == 1 {
					// Across passes the server also holds the
					// flows the firewall forgot: their FIN never
					// reaches it. A flow closed to make room for
					// another may still be counted by the server
					// when the other arrives.
					assert.LessOrEqual(t, maxOpen, flows+1, "connections open at once on the server")
				}
				mostOpen := 0
				for _, p := range reports {
					mostOpen = max(mostOpen, p.Open)
				}
				assert.LessOrEqual(t, mostOpen, flows, "connections open at once, as reported")
				if assert.NotEmpty(t, reports) {
					last := reports[len(reports)-1]
					assert.Equal(t, idletimeout.Progress{Elapsed: r.Elapsed, Pass: r.Passes, Survived: r.Survived, Died: r.Died}, last, "last progress")
				}
			})
		}
	})
	assertSearchesEnded(t)
}

// TestFindCancel cancels a search midway, once it has learned that the
// path keeps a flow silent 2s: Find returns at once with the context's
// error and with what it had learned, and every connection is closed (the
// server sees each end) with no goroutine left.
func TestFindCancel(t *testing.T) {
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: 60 * time.Second, Tag: labTag})
	srv := startServer(t, lab, serverOptions{})
	// The deadline only keeps a search that never learns 2s from hanging
	// the test; the cancel below ends it.
	ctx, cancel := context.WithTimeoutCause(context.Background(), 30*time.Second, errors.New("nothing learned in 30s"))
	defer cancel()
	var cancelled time.Time
	var learned time.Duration
	r, err := idletimeout.Find(ctx, srv.addr, idletimeout.Options{Max: time.Minute, Dial: labDial(lab),
		// Called from Find's goroutine, so learned and cancelled need
		// no lock.
		Progress: func(p idletimeout.Progress) {
			if cancelled.IsZero() && p.Survived >= 2*time.Second {
				learned, cancelled = p.Survived, time.Now()
				cancel()
			}
		}})
	took := time.Since(cancelled)
	require.False(t, cancelled.IsZero(), "the search never reported a silence of 2s kept: %v", err)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Contains(t, err.Error(), "keepalive: search for the idle timeout of "+srv.addr+" stopped")
	assert.Less(t, took, 200*time.Millisecond, "Find returned %v after the cancel", took)
	assert.GreaterOrEqual(t, r.Survived, learned, "learned before the cancel")
	assertSearchesEnded(t)
	assert.True(t, waitFor(2*time.Second, func() bool { open, _, _, _ := srv.stats(); return open == 0 }), "connections the server still holds")
	_, _, accepted, bytes := srv.stats()
	t.Logf("cancelled having kept %v of silence, returned %v later: %d connections opened, all closed", learned, took.Round(time.Millisecond), accepted)
	assert.Zero(t, bytes, "application data received by the server")
}

// TestFindUnreachable checks the addresses that fail at once: one that
// refuses the connection and one that does not answer.
func TestFindUnreachable(t *testing.T) {
	t.Run("refused", func(t *testing.T) {
		lab := netlab.New(t, netlab.Options{Tag: labTag})
		srv := startServer(t, lab, serverOptions{})
		// A port of the server's address that nothing listens on.
		host, _, err := net.SplitHostPort(srv.addr)
		require.NoError(t, err)
		addr := net.JoinHostPort(host, "1")
		start := time.Now()
		_, err = idletimeout.Find(context.Background(), addr, idletimeout.Options{Dial: labDial(lab)})
		require.Error(t, err)
		assert.ErrorIs(t, err, syscall.ECONNREFUSED)
		assert.True(t, strings.HasPrefix(err.Error(), "keepalive: "+addr+" refused the connection: "), "%v", err)
		assert.Less(t, time.Since(start), time.Second)
		assertSearchesEnded(t)
	})
	t.Run("no answer", func(t *testing.T) {
		lab := netlab.New(t, netlab.Options{Loss: 100, Tag: labTag})
		srv := startServer(t, lab, serverOptions{})
		start := time.Now()
		_, err := idletimeout.Find(context.Background(), srv.addr, idletimeout.Options{Dial: labDial(lab), DialTimeout: time.Second})
		require.Error(t, err)
		// The dial ends at its deadline either through the context
		// (net's timeout error) or through the socket's own deadline
		// (os.ErrDeadlineExceeded), whichever fires first; both say
		// Timeout.
		var ne net.Error
		assert.True(t, errors.As(err, &ne) && ne.Timeout(), "%v", err)
		assert.True(t, strings.HasPrefix(err.Error(), "keepalive: "+srv.addr+" did not answer within 1s: "), "%v", err)
		assert.Less(t, time.Since(start), 1500*time.Millisecond)
		assertSearchesEnded(t)
		_, _, accepted, _ := srv.stats()
		assert.Zero(t, accepted)
	})
}
