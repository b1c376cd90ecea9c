package idletimeout

import (
	"container/heap"
	"errors"
	"testing"
	"time"
)

// simPath is a path simulated on a virtual clock: a client whose kernel
// sends keepalive probes as Linux does, a middlebox next to the client that
// forgets flows, and a server a round trip away.
type simPath struct {
	// timeout is the silence after which the middlebox forgets a flow; a
	// packet of a forgotten flow is dropped, or answered with a reset when
	// reset is set. Zero never forgets.
	timeout time.Duration
	reset   bool
	// activeReset makes the middlebox reset both ends of a flow the moment
	// it forgets it, as some load balancers do.
	activeReset bool
	// serverClose is the idleness (since the last data) after which the
	// server closes a connection; zero never.
	serverClose time.Duration
	// serverProbe is the Idle of the server's own keepalive: its probes
	// refresh the middlebox and reach the client; zero none.
	serverProbe time.Duration
	// serverReset makes the server end idle connections with a reset
	// instead of a FIN, as MariaDB does.
	serverReset bool
	// farewell makes the server send data right before it ends an idle
	// connection, as PostgreSQL does (FATAL: terminating connection due
	// to idle-session timeout).
	farewell bool
	// greet makes the server send data as soon as a connection opens, as
	// MySQL and SSH servers do.
	greet bool
	// serverData, if not zero, makes the server send data of its own
	// after each serverData of silence.
	serverData time.Duration
	// unaccepted, if not nil, tells the connections (from 0, in the order
	// they connect) that the server never accepted: its kernel answers
	// any probe of theirs with a reset.
	unaccepted func(n int) bool
	// refuseConn, if not nil, tells the connections the server ends at
	// once, as one that limits connections does.
	refuseConn func(n int) bool
	// maxConns, if not zero, makes the server end at once a connection
	// that arrives while it holds that many, as MySQL's max_connections
	// does.
	maxConns int
	// resent, if not nil, tells the connections whose SYN is sent again:
	// they connect a second later.
	resent func(n int) bool
	// handshake, if not nil, tells how many times the server sends its
	// SYN-ACK again to each connection, 0, 1 or 2: once when the last
	// segment of the handshake is lost, a second after the connect, and
	// again 2s later when the answer to that is lost too. Each reaches the
	// client as a segment without data.
	handshake func(n int) int
	// reportLate delays the report of each connect, as a dialing
	// goroutine scheduled late on a busy machine does: the engine then
	// counts silence from later than the kernel does.
	reportLate time.Duration
	rtt        time.Duration // client to server and back
	dialTime   time.Duration // connect
	refuse     bool          // every connect is refused
	// loseProbe and loseAck lose the n-th probe (from 0) of the k-th
	// firing (from 1) of a flow at idle, or its answer, before the
	// middlebox sees it.
	loseProbe, loseAck func(idle time.Duration, k, n int) bool
	pollDelay          time.Duration // the driver's delay noticing an answer
	slack              time.Duration // how late each kernel timer fires
}

// sim runs an engine against a simPath. It is the engine's driver.
type sim struct {
	t       testing.TB
	p       simPath
	e       *engine
	now     time.Duration
	q       simQueue
	seq     int
	flows   map[flowID]*simFlow
	open    int
	maxOpen int
	fires   map[time.Duration]int // firings at each idle
	dials   int                   // connects started
	started []time.Duration       // when each connect started
	conns   int                   // connections made
}

type simFlow struct {
	open       bool
	kernelLast time.Duration // the client's last packet received
	mbLast     time.Duration // the middlebox's last packet of the flow
	lastData   time.Duration
	forgotten  bool
	unaccepted bool
	heard      bool // a segment without data arrived since the flow fell silent
	gen        int  // bumped to cancel the probes and answers in flight
}

func newSim(t testing.TB, p simPath, o Options) *sim {
	t.Helper()
	s, err := o.settings()
	if err != nil {
		t.Fatal(err)
	}
	s.address = "192.0.2.1:80"
	if p.loseProbe == nil {
		p.loseProbe = func(time.Duration, int, int) bool { return false }
	}
	if p.loseAck == nil {
		p.loseAck = func(time.Duration, int, int) bool { return false }
	}
	x := &sim{t: t, p: p, flows: make(map[flowID]*simFlow), fires: make(map[time.Duration]int)}
	x.e = newEngine(s, x)
	return x
}

// run runs the search to its end and returns its result and error.
func (x *sim) run() (Result, error) {
	x.e.start(0)
	for steps := 0; !x.e.done; steps++ {
		if steps > 10_000_000 {
			x.t.Fatal("the search does not end")
		}
		at, ok := x.e.next()
		if x.q.Len() > 0 && (!ok || x.q[0].at <= at) {
			ev := heap.Pop(&x.q).(*simEvent)
			x.now = ev.at
			ev.fn()
			continue
		}
		if !ok {
			x.t.Fatalf("the search waits for nothing at %v", x.now)
		}
		x.now = max(x.now, at)
		x.e.tick(x.now)
	}
	return x.e.result(), x.e.err
}

func (x *sim) at(t time.Duration, fn func()) {
	x.seq++
	heap.Push(&x.q, &simEvent{at: t, seq: x.seq, fn: fn})
}

func (x *sim) send(ev event) {
	ev.at = x.now
	x.e.handle(ev)
}

// forgets reports whether the middlebox has forgotten f at t, marking it.
func (x *sim) forgets(f *simFlow, t time.Duration) bool {
	if x.p.timeout > 0 && t-f.mbLast >= x.p.timeout {
		f.forgotten = true
	}
	return f.forgotten
}

func (x *sim) dial(id flowID) {
	n := x.dials
	x.dials++
	x.started = append(x.started, x.now)
	delay := x.p.dialTime
	resent := x.p.resent != nil && x.p.resent(n)
	if resent {
		delay += time.Second
	}
	x.at(x.now+delay, func() {
		if x.p.refuse {
			x.send(event{kind: evDialFailed, id: id, err: errors.New("connection refused")})
			return
		}
		c := x.conns
		x.conns++
		f := &simFlow{open: true, kernelLast: x.now, mbLast: x.now, lastData: x.now}
		f.unaccepted = x.p.unaccepted != nil && x.p.unaccepted(c)
		x.flows[id] = f
		x.open++
		x.maxOpen = max(x.maxOpen, x.open)
		if x.p.reportLate > 0 {
			x.at(x.now+x.p.reportLate, func() { x.send(event{kind: evOpened, id: id, resent: resent}) })
		} else {
			x.send(event{kind: evOpened, id: id, resent: resent})
		}
		switch {
		case f.unaccepted:
			// The server knows nothing of it: no data, no close.
		case x.p.refuseConn != nil && x.p.refuseConn(c), x.p.maxConns > 0 && x.open > x.p.maxConns:
			x.at(x.now+x.p.rtt, func() {
				if f.open {
					x.end(id, f, endEOF)
				}
			})
			return
		case x.p.greet:
			x.serverSends(id, f, x.now+x.p.rtt/2)
		}
		if x.p.handshake != nil {
			// The SYN-ACK comes again 1s after the connect, and if the
			// answer to that is lost too, 2s later.
			for _, after := range []time.Duration{time.Second, 3 * time.Second}[:x.p.handshake(c)] {
				x.at(x.now+after, func() {
					if f.open && !x.forgets(f, x.now) {
						f.mbLast = x.now
						f.heard = true
					}
				})
			}
		}
		if f.unaccepted {
			return
		}
		if x.p.serverClose > 0 {
			x.serverClose(id, f)
		}
		if x.p.activeReset {
			x.watch(id, f)
		}
		if x.p.serverProbe > 0 {
			x.serverProbes(id, f, x.now+x.p.rtt/2+x.p.serverProbe)
		}
		if x.p.serverData > 0 {
			x.serverSends(id, f, x.now+x.p.rtt/2+x.p.serverData)
		}
	})
}

// serverSends has the server send data on f at t, reaching the client
// half a round trip later if the middlebox still knows the flow; with
// serverData, again after that much silence.
func (x *sim) serverSends(id flowID, f *simFlow, t time.Duration) {
	x.at(t+x.p.rtt/2, func() {
		if !f.open || x.forgets(f, x.now) {
			return
		}
		f.mbLast, f.kernelLast, f.lastData = x.now, x.now, x.now
		f.gen++ // data restarts the silence: no probe is out any more
		x.send(event{kind: evData, id: id})
		if x.p.serverData > 0 {
			x.serverSends(id, f, x.now+x.p.rtt/2+x.p.serverData)
		}
	})
}

// serverClose has the server end f once it has been idle for
// serverClose, counted from the last data; the FIN or reset reaches the
// client if the middlebox still knows the flow when it passes.
func (x *sim) serverClose(id flowID, f *simFlow) {
	last := f.lastData
	x.at(last+x.p.serverClose+x.p.rtt/2, func() {
		if !f.open {
			return
		}
		if f.lastData != last {
			x.serverClose(id, f) // data meanwhile
			return
		}
		if x.forgets(f, x.now) {
			return
		}
		if x.p.farewell {
			f.mbLast, f.kernelLast = x.now, x.now
			x.send(event{kind: evData, id: id})
		}
		if x.p.serverReset {
			x.end(id, f, endReset)
			return
		}
		x.end(id, f, endEOF)
	})
}

// serverProbes has the server probe f at t, and after each answer again
// serverProbe later. A probe crosses the middlebox half a round trip after
// it leaves, if the middlebox still knows the flow.
func (x *sim) serverProbes(id flowID, f *simFlow, t time.Duration) {
	x.at(t+x.p.rtt/2, func() {
		if !f.open || x.forgets(f, x.now) {
			return
		}
		f.mbLast = x.now
		f.heard = true
		x.serverProbes(id, f, x.now+x.p.rtt/2+x.p.serverProbe)
	})
}

// watch has the middlebox reset both ends when it forgets f.
func (x *sim) watch(id flowID, f *simFlow) {
	at := f.mbLast + x.p.timeout
	x.at(at, func() {
		if !f.open {
			return
		}
		if f.mbLast+x.p.timeout > x.now {
			x.watch(id, f) // refreshed meanwhile
			return
		}
		f.forgotten = true
		x.end(id, f, endReset)
	})
}

func (x *sim) end(id flowID, f *simFlow, k endKind) {
	f.open = false
	f.gen++
	x.open--
	x.send(event{kind: evEnded, id: id, end: k, err: errors.New("ended")})
}

func (x *sim) heard(id flowID) heardKind {
	if x.flows[id].heard {
		return heardSegments
	}
	return heardNothing
}

func (x *sim) fire(id flowID, idle time.Duration) {
	f := x.flows[id]
	f.gen++
	x.fires[idle]++
	x.probe(id, f, f.gen, idle, x.fires[idle], 0, max(x.now, f.kernelLast+idle)+x.p.slack)
}

// probe sends the n-th probe of a firing at t, as the kernel's keepalive
// timer does: unanswered, the next one an interval later, and after Count
// of them the connection is dead.
func (x *sim) probe(id flowID, f *simFlow, gen int, idle time.Duration, k, n int, t time.Duration) {
	s := x.e.s
	x.at(t, func() {
		if !f.open || f.gen != gen {
			return
		}
		if n == s.count {
			x.end(id, f, endTimeout)
			return
		}
		x.probe(id, f, gen, idle, k, n+1, t+s.interval+x.p.slack)
		if x.p.loseProbe(idle, k, n) {
			return
		}
		if x.forgets(f, x.now) {
			if x.p.reset {
				x.at(x.now, func() {
					if f.open {
						x.end(id, f, endReset)
					}
				})
			}
			return
		}
		f.mbLast = x.now
		if f.unaccepted {
			// The server's kernel knows nothing of the flow.
			x.at(x.now+x.p.rtt, func() {
				if f.open && f.gen == gen {
					x.end(id, f, endReset)
				}
			})
			return
		}
		x.at(x.now+x.p.rtt, func() {
			if !f.open || f.gen != gen || x.p.loseAck(idle, k, n) || x.forgets(f, x.now) {
				return
			}
			f.mbLast = x.now
			f.kernelLast = x.now
			f.gen++ // the answer stops the probes
			ackAt := x.now
			x.at(x.now+x.p.pollDelay, func() {
				if f.open {
					x.send(event{kind: evAnswered, id: id, ackAt: ackAt})
				}
			})
		})
	})
}

func (x *sim) park(id flowID) {
	f := x.flows[id]
	f.gen++
	f.heard = false
}

func (x *sim) close(id flowID) {
	if f := x.flows[id]; f != nil && f.open {
		f.open = false
		f.gen++
		x.open--
	}
}

type simEvent struct {
	at  time.Duration
	seq int
	fn  func()
}

type simQueue []*simEvent

func (q simQueue) Len() int { return len(q) }
func (q simQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q simQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *simQueue) Push(v any)   { *q = append(*q, v.(*simEvent)) }
func (q *simQueue) Pop() any {
	old := *q
	v := old[len(old)-1]
	*q = old[:len(old)-1]
	return v
}
