package idletimeout

import (
	"context"
	"fmt"
	"net"
	"slices"
	"time"
)

// The search is an engine that reacts to events on flows (opened, data
// received, probe answered, connection ended) and to the passing of time,
// and asks a driver to dial, fire, park and close flows. It knows nothing
// of sockets and reads no clock: every event carries its time, counted from
// the start of the search. The network driver feeds it from the kernel; the
// tests feed it from a simulated path.

const (
	// lead is how long before a flow's test the search sets its Idle. The
	// kernel then re-arms the keepalive timer for the rest of the silence,
	// which is short, so the probe leaves within a jiffy or two of the
	// silence asked for: a timer set hours ahead may fire up to an eighth of
	// its length late.
	lead = 250 * time.Millisecond

	// reserveSlack is added to Count·Interval + lead, after the last test
	// flow of a pass connected, before its reserves are dialed; see
	// [engine.openedFlow].
	reserveSlack = 250 * time.Millisecond

	// reserves is how many flows each pass keeps for re-tests.
	reserves = 2

	// dialConcurrency is the most connects a search has in flight at once.
	dialConcurrency = 16

	// dialGap is the least time between the starts of two connects: 200
	// a second. A server takes its connections from the kernel's accept
	// queue one at a time, and one that forks for each (socat, sshd,
	// PostgreSQL) takes a millisecond or more; the queue holds as many as
	// its listen backlog (5 for socat), and the kernel drops the SYNs that
	// come while it is full. At this pace such a server keeps up.
	dialGap = 5 * time.Millisecond

	// maxDialGap bounds the pace: each connect whose SYN had to be sent
	// again (the server's queue was full, or a packet was lost) doubles
	// the gap, up to this.
	maxDialGap = 80 * time.Millisecond

	// park is the Idle of a flow that waits for its test: the longest the
	// kernel takes (MAX_TCP_KEEPIDLE), so that it sends no probe of its
	// own during a search.
	park = 32767 * time.Second

	// extraPasses is how many passes beyond the planned ones a search may
	// take to re-test points whose flows were lost to something other than
	// the path (a connection the server reset by itself).
	extraPasses = 2

	// refuseWithin: a connection the server ends sooner than this after
	// it opened, before any of its tests, was refused rather than left
	// idle too long: the server limits connections.
	refuseWithin = time.Second

	// listenSlack is added to the silence x within which a flow was heard
	// from before it is asked whether it was heard from again: a server
	// that sends keepalive probes every x or sooner has sent one by then.
	listenSlack = 500 * time.Millisecond

	// minWitnessGap is the least time between a flow's last data and the
	// answer to its probe for the flow to tell which clock ends
	// connections: one counted from the last data (the server's) or from
	// the last packet (a middlebox's).
	minWitnessGap = 500 * time.Millisecond

	// goodbyeWait is how long after data that broke a silence the search
	// waits for the connection's end: a server that ends an idle session
	// says why first (PostgreSQL's FATAL message), and then the data
	// belongs to the end. Data not followed by an end is the server's own
	// traffic.
	goodbyeWait = time.Second

	// handshakeWindow is how long after its connect a flow may receive a
	// segment of its own handshake sent again: the server sends its
	// SYN-ACK again 1s, 3s, 7s, 15s and 31s after the first when no
	// answer comes (tcp_synack_retries 5, Linux's default), and gives up
	// at 63s. A segment heard later comes from the server by itself.
	handshakeWindow = 64 * time.Second

	// maxTries is how many times a point's test is given to another flow
	// after its flow was lost to something other than the path, in one
	// pass.
	maxTries = 2

	// probeEarly is how much earlier than the search's reckoning the
	// kernel's keepalive timer may send a probe: it counts in jiffies.
	probeEarly = 20 * time.Millisecond
)

// flowID indexes the flows of a search, in the order they were made.
type flowID int

type eventKind int

const (
	evOpened     eventKind = iota // the flow connected
	evDialFailed                  // the flow did not connect
	evData                        // the server sent data
	evAnswered                    // the flow's probe was answered
	evEnded                       // the connection ended
)

// endKind is how a connection ended.
type endKind int

const (
	endTimeout endKind = iota // ETIMEDOUT: keepalive probes unanswered
	endReset                  // ECONNRESET: a reset arrived
	endEOF                    // the peer closed it (FIN)
	endOther                  // any other error
)

// event is something that happened to a flow.
type event struct {
	kind   eventKind
	id     flowID
	at     time.Duration // when, since the search started
	ackAt  time.Duration // evAnswered: when the answer arrived
	end    endKind       // evEnded
	err    error         // evDialFailed, evEnded
	resent bool          // evOpened: its SYN had to be sent again
	conn   net.Conn      // evOpened from the network driver; the engine ignores it
}

// driver carries out the engine's requests. The results come back as
// events.
type driver interface {
	// dial starts to connect the flow; evOpened or evDialFailed follows.
	dial(id flowID)
	// heard reports whether the flow has received segments since its
	// silence began (it connected, or was parked): heardData when some
	// carried data (whose event is on its way), heardSegments when none
	// did (keepalive probes of the server's, which keep the path's
	// middleboxes from counting the silence, or a segment of the
	// handshake sent again).
	heard(id flowID) heardKind
	// fire sets the flow's Idle to idle, so that the kernel sends a probe
	// once the flow has been silent that long, or at once if it already
	// has; evAnswered or evEnded follows.
	fire(id flowID, idle time.Duration)
	// park sets the flow's Idle back to park, and starts its silence
	// afresh for heard.
	park(id flowID)
	// close closes the flow, or abandons its dial; no event follows.
	close(id flowID)
}

type heardKind int

const (
	heardNothing heardKind = iota
	heardSegments
	heardData
)

type role int

const (
	testFlow    role = iota // tests one point of a pass's ladder
	reserveFlow             // waits to re-test a point
)

type flowState int

const (
	fsNew     flowState = iota // not dialed yet
	fsDialing                  // connecting
	fsParked                   // connected, Idle parked
	fsFired                    // Idle set to its test's silence
	fsClosed
)

type flow struct {
	id       flowID
	role     role
	state    flowState
	opened   time.Duration // when it connected
	last     time.Duration // the last packet received: the kernel counts silence from it
	lastData time.Duration // connected, or the last data received: a server counts idleness from it
	// refreshed reports that a probe of the flow has been answered, so
	// that its silence no longer counts from lastData.
	refreshed bool
	spoke     bool          // data arrived after it connected
	point     *point        // the point it tests; nil when it has none
	firedAt   time.Duration // fsFired: when the probe was due
	// listenX, when not zero, is the silence within which the flow was
	// heard from: at listenAt the search asks whether it was heard from
	// again. Its silence is then unknown, so it tests nothing more.
	listenX, listenAt time.Duration
	// goodbye, when not zero, is when data broke the flow's silence, not
	// yet known to be the server's last words or its own traffic.
	goodbye time.Duration
	// sentinel reports that the flow is kept from every test, so that its
	// silence counts from its connect until the server ends it.
	sentinel bool
	// settled reports that the flow has been asked, handshakeWindow
	// after its connect, whether segments reached it since: from then
	// on, a segment heard cannot be its handshake sent again.
	settled bool
}

// lateCheck reports whether f, parked for a test after handshakeWindow,
// is due to be asked whether it was heard from during its first minute.
func (f *flow) lateCheck() bool {
	return f.state == fsParked && f.point != nil && !f.settled && f.listenX == 0 && f.point.x > handshakeWindow
}

// armAt returns when the flow's Idle must be set for its probe to leave
// after point.x of silence.
func (f *flow) armAt() time.Duration {
	return f.last + f.point.x - lead
}

// free reports whether f is connected, silent since a known moment and
// unassigned: it may re-test a point.
func (f *flow) free() bool {
	return f.state == fsParked && f.point == nil && f.listenX == 0 && !f.sentinel
}

type pointState int

const (
	psPending  pointState = iota
	psSurvived            // a probe after x of silence was answered
	psSuspect             // its flow died; a re-test decides
	psRetest              // its flow was lost to something else; another flow tests it
	psDied                // confirmed: the path loses a flow silent for x
	psVoid                // nothing learned, or no longer needed
)

// point is one silence tested in a pass.
type point struct {
	x     time.Duration
	state pointState
	cause Cause // psSuspect, psDied: how the flow was lost
	end   End   // psSuspect, psDied: how the flow ended
	tries int   // times its test was given to another flow
	// deaths counts the flows lost after x of silence.
	deaths int
}

// confirmations is how many flows must be lost after the same silence
// for the loss to stand. Lost packets can lose a flow tested just below
// the path's timeout: its first probe lost, the next one, an Interval
// later, finds the flow forgotten. The same must happen to two more flows,
// about p³ a search for a path that loses a share p of its round trips,
// for the wrong silence to stand. Lost packets make no reset, but a server
// resets a connection it never accepted, at its first probe: one more
// flow, connected later, is enough.
func confirmations(end End) int {
	if end == EndProbeReset {
		return 2
	}
	return 3
}

// activeEnd is a connection that ended, by FIN or reset, before any probe
// of it was due: the server closed it, or something on the path reset it,
// by itself.
type activeEnd struct {
	silence  time.Duration // since its last data
	sincePkt time.Duration // since its last packet: the same unless refreshed
	gap      time.Duration // refreshed: from its last data to the answer to its probe
	end      End
	spoke    bool
}

// serverEnd is an end that more than one connection met after the same
// silence: its silence S, how, and who ended them.
type serverEnd struct {
	silence time.Duration
	end     End
	spoke   bool
	// byPath: a connection whose probe had been answered met the end the
	// same silence after that answer, not after its last data: a
	// middlebox, which counts packets, reset the flows; a server counts
	// only data. Unknown until decided.
	byPath, decided bool
}

// settings are validated Options with the defaults filled in.
type settings struct {
	max         time.Duration
	flows       int
	interval    time.Duration
	count       int
	dialTimeout time.Duration
	dial        func(ctx context.Context, network, address string) (net.Conn, error)
	progress    func(Progress)
	address     string // resolved
}

type engine struct {
	s         settings
	d         driver
	full      []time.Duration // the ladder for s.max
	maxPasses int

	flows     []*flow
	open      int  // flows dialing or connected
	opened    int  // flows that connected, in all
	connected bool // the address has answered once

	gap      time.Duration // between the starts of two connects
	nextDial time.Duration // the earliest the next connect may start
	// limit, when not zero, is the most connections the server was seen
	// to hold at once: it refused one with that many open.
	limit int

	pass        int
	points      []*point      // this pass's, ascending
	toDial      []*flow       // this pass's test flows not yet dialed, ascending
	dialing     int           // dials in flight
	testsOut    int           // this pass's test flows not yet connected
	reserveAt   time.Duration // when this pass's reserves are due; <0 when not
	reservesOut int           // reserves dialing
	queue       []*point      // suspects and lost tests waiting for a flow
	active      []activeEnd   // unrefreshed flows that ended by themselves
	witnesses   []activeEnd   // refreshed flows that ended by themselves

	survivors []time.Duration
	died      time.Duration
	cause     Cause
	how       End        // how the flow lost after died ended
	server    *serverEnd // confirmed; nil when none
	// ceiling is the shortest silence within which flows were heard
	// from again and again: no silence from it on can be measured. Zero
	// when none was.
	ceiling time.Duration
	// recurrent holds the silences within which a flow was heard from
	// twice running.
	recurrent []time.Duration

	retests, spurious, unaccepted, refused, resent int
	err                                            error
	done                                           bool
	end                                            time.Duration

	reported Progress
}

func newEngine(s settings, d driver) *engine {
	e := &engine{s: s, d: d, full: ladder(s.max), reserveAt: -1, gap: dialGap}
	e.maxPasses = passes(len(e.full), s.flows-reserves) + extraPasses
	return e
}

// start begins the first pass at now.
func (e *engine) start(now time.Duration) {
	e.startPass(now)
	e.report(now, true)
}

func (e *engine) startPass(now time.Duration) {
	e.pass++
	lo, hi := e.survived(), e.died
	var cands []time.Duration
	for _, x := range e.full {
		if x > lo && (hi == 0 || x < hi) && (e.ceiling == 0 || x < e.ceiling) {
			cands = append(cands, x)
		}
	}
	e.points = e.points[:0]
	e.toDial = e.toDial[:0]
	for _, x := range choose(cands, e.s.flows-reserves) {
		p := &point{x: x}
		e.points = append(e.points, p)
		f := e.newFlow(testFlow)
		f.point = p
		e.toDial = append(e.toDial, f)
	}
	e.testsOut = len(e.toDial)
	e.reserveAt, e.reservesOut = -1, 0
	e.queue = e.queue[:0]
	e.active = e.active[:0]
	e.witnesses = e.witnesses[:0]
	e.dialMore(now)
}

func (e *engine) newFlow(r role) *flow {
	f := &flow{id: flowID(len(e.flows)), role: r}
	e.flows = append(e.flows, f)
	return f
}

// dialLimit is the most connects in flight: one until the address has
// answered, then dialConcurrency.
func (e *engine) dialLimit() int {
	if !e.connected {
		return 1
	}
	return dialConcurrency
}

// room reports whether another connection may be opened: fewer than
// Flows open, and fewer than the server was seen to hold.
func (e *engine) room() bool {
	return e.open < e.s.flows && (e.limit == 0 || e.open < e.limit)
}

// dialMore dials test flows in ascending order of their silence, at most
// dialLimit at once and one per gap. Once the server has refused a
// connection, the tests of the flows it would not hold are given to flows
// already open.
func (e *engine) dialMore(now time.Duration) {
	for e.dialing < e.dialLimit() && len(e.toDial) > 0 && now >= e.nextDial {
		f := e.toDial[0]
		e.toDial = e.toDial[1:]
		if !e.room() {
			p := f.point
			e.testsOut--
			e.closeFlow(f)
			e.retry(p)
			continue
		}
		e.dialFlow(f)
		e.nextDial = now + e.gap
	}
}

func (e *engine) dialFlow(f *flow) {
	f.state = fsDialing
	e.open++
	e.dialing++
	e.d.dial(f.id)
}

// survived returns the longest silence the path was seen to keep, below
// the shortest that lost a flow: a probe answered after it, or, when the
// server ends idle connections, the silence after which its end crossed
// the path, in whole seconds.
func (e *engine) survived() time.Duration {
	var l time.Duration
	for _, x := range e.survivors {
		if x > l && (e.died == 0 || x < e.died) {
			l = x
		}
	}
	if e.cause == CauseServerClose {
		l = max(l, e.died.Truncate(time.Second))
	}
	return l
}

// needed reports whether testing x can still narrow the bounds.
func (e *engine) needed(x time.Duration) bool {
	return x > e.survived() && (e.died == 0 || x < e.died) && (e.ceiling == 0 || x < e.ceiling)
}

// next returns when the engine must next be ticked, and false when no
// timed action is pending.
func (e *engine) next() (time.Duration, bool) {
	var at time.Duration
	ok := false
	take := func(t time.Duration) {
		if !ok || t < at {
			at, ok = t, true
		}
	}
	if e.reserveAt >= 0 {
		take(e.reserveAt)
	}
	if len(e.toDial) > 0 && e.dialing < e.dialLimit() {
		take(e.nextDial)
	}
	for _, f := range e.flows {
		switch {
		case f.state != fsParked:
		case f.point != nil:
			take(f.armAt())
		case f.listenX != 0:
			take(f.listenAt)
		}
		if f.goodbye != 0 && (f.state == fsParked || f.state == fsFired) {
			take(f.goodbye + goodbyeWait)
		}
		if f.lateCheck() {
			take(f.opened + handshakeWindow)
		}
	}
	if t, ok := e.decideAt(); ok {
		take(t)
	}
	return at, ok
}

// tick carries out the timed actions due at now.
func (e *engine) tick(now time.Duration) {
	if e.done {
		return
	}
	if e.reserveAt >= 0 && now >= e.reserveAt {
		e.reserveAt = -1
		for range reserves {
			if e.room() {
				e.reservesOut++
				e.dialFlow(e.newFlow(reserveFlow))
			}
		}
	}
	e.dialMore(now)
	for _, f := range e.flows {
		if f.goodbye != 0 && (f.state == fsParked || f.state == fsFired) && now >= f.goodbye+goodbyeWait {
			// No end followed: the server's own traffic.
			at := f.goodbye
			f.goodbye = 0
			e.ownData(f, at)
		}
		if f.state != fsParked {
			continue
		}
		if f.lateCheck() && now >= f.opened+handshakeWindow {
			// What reached the flow so far may be its handshake sent
			// again, after which its silence is unknown; from now on,
			// what reaches it is the server's own.
			f.settled = true
			switch e.d.heard(f.id) {
			case heardSegments:
				p := f.point
				e.closeFlow(f)
				e.retry(p)
				continue
			case heardData:
				continue // its event follows
			}
			e.d.park(f.id)
		}
		if f.listenX != 0 && now >= f.listenAt {
			// Heard from again within the same silence: the server
			// sends segments by itself, again and again.
			if e.d.heard(f.id) != heardNothing {
				e.recur(f.listenX)
			}
			e.closeFlow(f)
			continue
		}
		if f.point == nil || now < f.armAt() {
			continue
		}
		p := f.point
		if (p.state != psPending && p.state != psSuspect && p.state != psRetest) || !e.needed(p.x) {
			// Learned otherwise meanwhile.
			if p.state == psPending || p.state == psSuspect || p.state == psRetest {
				e.discard(p, false, p.end)
			}
			f.point = nil
			continue
		}
		switch e.d.heard(f.id) {
		case heardData:
			// Its event follows; count the silence from now meanwhile.
			f.last, f.lastData = now, now
			continue
		case heardSegments:
			if f.settled {
				// Heard from after its first minute: the server sends
				// segments by itself, as a second flow heard from
				// within x of silence again would show.
				e.recur(p.x)
				e.closeFlow(f)
				e.retry(p)
				continue
			}
			e.heardFrom(f, now)
			continue
		}
		e.d.fire(f.id, p.x)
		if p.state == psSuspect {
			e.retests++
		}
		f.state = fsFired
		f.firedAt = max(now, f.last+p.x)
	}
	e.settle(now)
}

// heardFrom handles a flow that received segments while silent, before
// its probe: they may be the server's keepalive probes, which keep the
// path's middleboxes from counting the silence, or its data, or a segment
// of the handshake sent again. The flow's test is given to another flow,
// and the flow is asked again, once as much silence has passed, whether it
// was heard from again: keepalive probes and messages of the server's
// come again and again; a handshake is sent again once.
func (e *engine) heardFrom(f *flow, now time.Duration) {
	p := f.point
	f.point = nil
	if f.state == fsFired {
		f.state = fsParked
	}
	e.d.park(f.id)
	f.listenX, f.listenAt = p.x, now+p.x+listenSlack
	e.retry(p)
}

// recur records that a flow was heard from twice running within x of
// silence. Two such flows set the ceiling: one alone may have heard the
// handshake sent again, and its answer lost again.
func (e *engine) recur(x time.Duration) {
	e.recurrent = append(e.recurrent, x)
	if len(e.recurrent) >= 2 {
		e.ceiling = slices.Min(e.recurrent)
	}
}

// listening reports whether a flow waits to tell whether it is heard from
// again within a silence that can still matter: shorter than the shortest
// that lost a flow, and than the ceiling.
func (e *engine) listening() bool {
	for _, f := range e.flows {
		if f.state == fsParked && f.listenX != 0 && (e.died == 0 || f.listenX < e.died) && (e.ceiling == 0 || f.listenX < e.ceiling) {
			return true
		}
	}
	return false
}

func (e *engine) closeFlow(f *flow) {
	switch f.state {
	case fsClosed, fsNew:
		f.state = fsClosed
		return
	case fsDialing:
		e.dialing--
		if f.role == testFlow {
			e.testsOut--
		} else {
			e.reservesOut--
		}
	}
	f.state = fsClosed
	f.point = nil
	e.open--
	e.d.close(f.id)
}

// handle applies one event.
func (e *engine) handle(ev event) {
	if e.done || int(ev.id) >= len(e.flows) {
		return
	}
	f := e.flows[ev.id]
	switch ev.kind {
	case evOpened:
		if f.state == fsDialing {
			e.openedFlow(f, ev.at, ev.resent)
		}
	case evDialFailed:
		if f.state == fsDialing {
			e.dialFailed(f, ev.err)
		}
	case evData:
		if f.state == fsParked || f.state == fsFired {
			e.data(f, ev.at)
		}
	case evAnswered:
		if f.state == fsFired {
			e.answered(f, ev.ackAt)
		}
	case evEnded:
		if f.state == fsParked || f.state == fsFired {
			e.ended(f, ev)
		}
	}
	e.settle(ev.at)
}

func (e *engine) openedFlow(f *flow, at time.Duration, resent bool) {
	e.dialing--
	f.state = fsParked
	f.opened, f.last, f.lastData = at, at, at
	e.opened++
	e.connected = true
	if resent {
		// The server's accept queue was full, or the SYN was lost:
		// slow down.
		e.resent++
		e.gap = min(2*e.gap, maxDialGap)
	}
	if f.role == testFlow {
		e.testsOut--
		if e.testsOut == 0 && len(e.toDial) == 0 {
			// A reserve is useful for re-testing the point x of a test
			// flow that died if, when the death is known, it has been
			// silent for less than x − lead: the death is known
			// Count·Interval after the probe, so a reserve connected at
			// least Count·Interval + lead after every test flow always
			// is, and it fires reserveSlack (plus the spread of the
			// dials) after the death is known.
			e.reserveAt = at + time.Duration(e.s.count)*e.s.interval + lead + reserveSlack
		}
	} else {
		e.reservesOut--
	}
	e.dialMore(at)
}

func (e *engine) dialFailed(f *flow, err error) {
	e.closeFlow(f)
	if !e.connected {
		// The driver says what happened: "refused the connection: ...".
		e.fail(fmt.Errorf("keepalive: %s %w", e.s.address, err))
		return
	}
	e.fail(fmt.Errorf("keepalive: connection %d to %s failed while %d were open: the server or a firewall may limit connections from one client (lower Flows, now %d): %w",
		len(e.flows), e.s.address, e.open, e.s.flows, err))
}

// data records data from the server on f at. Data right after the
// connect is the server speaking first (a greeting), and starts the
// silence. Data that breaks a silence of a second or more is either the
// server's last words before it ends the connection, or its own traffic,
// which keeps the path from seeing a longer silence: the search waits
// goodbyeWait to tell.
func (e *engine) data(f *flow, at time.Duration) {
	switch {
	case f.goodbye != 0:
		// More of the same words.
	case at-f.lastData < refuseWithin && f.listenX == 0:
		f.spoke = true
		if f.state == fsFired && at-f.last >= f.point.x {
			// The data crossed the path after the probe was due: the
			// path still knew the flow.
			f.last, f.lastData = at, at
			e.answered(f, at)
			return
		}
		f.last, f.lastData = at, at
	default:
		f.goodbye = at
		if f.state == fsFired && at-f.last >= f.point.x {
			// Whatever it is, it crossed the path after the silence
			// tested.
			e.answered(f, at)
		}
	}
}

// ownData records data the server sent at by itself, after a silence,
// and did not end the connection after.
func (e *engine) ownData(f *flow, at time.Duration) {
	switch {
	case f.listenX != 0:
		e.recur(f.listenX)
		e.closeFlow(f)
	case f.point != nil:
		e.heardFrom(f, at)
	default:
		f.last, f.lastData = at, at
	}
}

// answered records that f's probe, due after its point's silence, was
// answered, and the answer arrived at ackAt. The flow stays open, parked:
// it may re-test a point, and its end, if the server ends it, tells whose
// clock ends connections.
func (e *engine) answered(f *flow, ackAt time.Duration) {
	f.last = ackAt
	f.refreshed = true
	if p := f.point; p != nil {
		e.survive(p)
	}
	f.point = nil
	f.state = fsParked
	e.d.park(f.id)
}

func (e *engine) survive(p *point) {
	if p.state == psSuspect {
		e.overturned(p.end)
	}
	p.state = psSurvived
	e.survivors = append(e.survivors, p.x)
}

// overturned counts a death that a flow kept as long or longer showed was
// not the path's: lost packets, or, for a reset answering a probe, a
// connection the server had never accepted.
func (e *engine) overturned(end End) {
	if end == EndProbeReset {
		e.unaccepted++
	} else {
		e.spurious++
	}
}

func (e *engine) ended(f *flow, ev event) {
	prev := f.state
	p := f.point
	listened := f.listenX != 0
	f.point = nil
	f.listenX = 0
	f.state = fsClosed
	e.open--
	silence := ev.at - f.lastData
	if f.goodbye != 0 {
		// The server said why, then ended it: its silence ended with
		// those words.
		silence = f.goodbye - f.lastData
	}
	if !f.refreshed && ev.at-f.opened < refuseWithin && (ev.end == endEOF || ev.end == endReset) {
		e.refusedFlow(silence, p)
		return
	}
	if prev == fsFired && p != nil && ev.at >= f.firedAt-probeEarly {
		// Its probe was due: the end answers it.
		switch ev.end {
		case endEOF:
			// A FIN crossed the path after the silence tested: the
			// flow was still known there.
			if ev.at-f.last >= p.x {
				e.survive(p)
			} else {
				e.retry(p)
			}
		case endReset:
			e.death(f, p, CauseReset, EndProbeReset)
			return
		default:
			e.death(f, p, CauseDrop, EndUnanswered)
			return
		}
	} else if p != nil {
		e.retry(p)
	}
	if listened || (ev.end != endEOF && ev.end != endReset) {
		return
	}
	a := activeEnd{silence: silence, sincePkt: silence - (f.last - f.lastData), gap: f.last - f.lastData, end: EndFIN, spoke: f.spoke}
	if ev.end == endReset {
		a.end = EndReset
	}
	if f.refreshed {
		// Its probe made the middleboxes count its silence afresh: that
		// its end crossed the path tells nothing of the path's timeout,
		// only whose clock ended it.
		e.witnesses = append(e.witnesses, a)
		return
	}
	e.activeEnd(a)
}

// refusedFlow records a connection the server ended within a second of
// its connect: it limits connections, and no more than are open now are
// opened from then on. A search whose every connection so far was refused
// fails.
func (e *engine) refusedFlow(after time.Duration, p *point) {
	e.refused++
	if e.limit == 0 || e.open < e.limit {
		e.limit = max(e.open, 1)
		e.keepSentinels()
	}
	if p != nil {
		e.retry(p)
	}
	if e.refused >= e.opened {
		e.fail(fmt.Errorf("keepalive: %s closed or reset a connection %v after it opened, before it was idle for a second: it may limit connections from one client (lower Flows, now %d), or not hold idle connections at all",
			e.s.address, after.Round(time.Millisecond), e.s.flows))
	}
}

// sentinels is how many flows a search whose connections the server
// limits keeps from every test: a server's own end is known from flows
// whose silence counts from their last data, and with every flow the
// server holds tested, none would be left.
const sentinels = 2

// keepSentinels makes sentinels of the open flows still unprobed whose
// tests come last, giving their tests to other flows.
func (e *engine) keepSentinels() {
	n := 0
	for _, f := range e.flows {
		if f.sentinel && f.state != fsClosed {
			n++
		}
	}
	for ; n < sentinels; n++ {
		var pick *flow
		for _, f := range e.flows {
			if f.state != fsParked || f.refreshed || f.sentinel || f.listenX != 0 {
				continue
			}
			if pick == nil || pick.point != nil && (f.point == nil || f.point.x > pick.point.x) {
				pick = f
			}
		}
		if pick == nil {
			return
		}
		pick.sentinel = true
		if p := pick.point; p != nil {
			pick.point = nil
			e.retry(p)
		}
	}
}

// retry gives p's test, or a suspect's re-test, to another flow: its
// flow was lost to something other than the path. After maxTries, nothing
// is learned of p in this pass.
func (e *engine) retry(p *point) {
	if p.state != psPending && p.state != psRetest && p.state != psSuspect {
		return
	}
	if p.tries == maxTries {
		p.state = psVoid
		return
	}
	p.tries++
	if p.state == psPending {
		p.state = psRetest
	}
	e.queue = append(e.queue, p)
}

// death records that f, testing p, ended with its probes unanswered or
// reset. A death is a suspect until more flows tested after the same
// silence are lost too (confirmations): lost packets lose a flow, and a
// server resets one it never accepted.
func (e *engine) death(f *flow, p *point, cause Cause, end End) {
	if !e.needed(p.x) {
		e.discard(p, true, end)
		return
	}
	p.deaths++
	if p.state != psSuspect {
		p.cause, p.end = cause, end
	}
	if p.deaths >= confirmations(p.end) {
		p.state = psDied
		if e.died == 0 || p.x < e.died {
			e.died, e.cause, e.how = p.x, p.cause, p.end
		}
		return
	}
	p.state = psSuspect
	e.queue = append(e.queue, p)
}

// discard marks p void, no longer needed. A death of it that a flow kept
// for a longer silence contradicts was not the path's: counted as
// overturned. died says its flow has just died, ending as end.
func (e *engine) discard(p *point, died bool, end End) {
	if (died || p.state == psSuspect) && p.x <= e.survived() {
		e.overturned(end)
	}
	p.state = psVoid
}

// activeEnd records a connection that ended by itself, silent and
// unprobed. Two such ends within max(1s, 2%) of each other, or one when
// no other unprobed flow could confirm it, show that the server or the
// path ends idle connections by itself.
func (e *engine) activeEnd(a activeEnd) {
	confirmed := false
	for _, b := range e.active {
		if b.end == a.end && absDiff(a.silence, b.silence) <= tolerance(max(a.silence, b.silence)) {
			confirmed = true
			a.silence = min(a.silence, b.silence)
			a.spoke = a.spoke && b.spoke
		}
	}
	e.active = append(e.active, a)
	if !confirmed && e.unprobed() > 0 {
		return
	}
	if e.server != nil && e.server.silence <= a.silence {
		return
	}
	e.server = &serverEnd{silence: a.silence, end: a.end, spoke: a.spoke, decided: a.end == EndFIN}
	e.decide(a.silence)
}

// decideAt returns when the pending question of who resets the flows is
// answered if nothing happens before: when the witness flow has outlived
// the end counted from its last data.
func (e *engine) decideAt() (time.Duration, bool) {
	if e.server == nil || e.server.decided {
		return 0, false
	}
	w := e.witness()
	if w == nil {
		return 0, false
	}
	return w.lastData + e.server.silence + (w.last-w.lastData)/2, true
}

// witness returns the open flow whose end can tell whose clock ends the
// connections: refreshed, with a gap between its last data and the
// answer to its probe of at least minWitnessGap; the smallest gap of at
// least twice max(1s, 2%) of the end's silence (tight enough to answer
// soon, wide enough for a server's timers), else the widest.
func (e *engine) witness() *flow {
	var best *flow
	want := 2 * tolerance(e.server.silence)
	for _, f := range e.flows {
		if f.state != fsParked || !f.refreshed || f.listenX != 0 {
			continue
		}
		g := f.last - f.lastData
		if g < minWitnessGap {
			continue
		}
		if best == nil {
			best = f
			continue
		}
		bg := best.last - best.lastData
		if (g >= want && (bg < want || g < bg)) || (g < want && bg < want && g > bg) {
			best = f
		}
	}
	return best
}

// decide settles who resets the flows, if it can at now: a refreshed flow
// that met the same end counted from its last data shows the server's
// clock; counted from the answer to its probe, or outliving the end
// counted from its last data, a middlebox's. With no such flow at all, the
// server is taken to have ended them.
func (e *engine) decide(now time.Duration) {
	sv := e.server
	if sv == nil {
		return
	}
	if !sv.decided {
		for _, w := range e.witnesses {
			if w.gap < minWitnessGap {
				continue
			}
			dData, dPkt := absDiff(w.silence, sv.silence), absDiff(w.sincePkt, sv.silence)
			if min(dData, dPkt) <= w.gap/2 {
				sv.decided, sv.byPath = true, dPkt < dData
				break
			}
		}
	}
	if !sv.decided {
		if at, ok := e.decideAt(); !ok {
			sv.decided = true
		} else if now >= at {
			sv.decided, sv.byPath = true, true
		}
	}
	if !sv.decided {
		return
	}
	cause := CauseServerClose
	if sv.byPath {
		cause = CauseReset
	}
	if e.died == 0 || sv.silence < e.died || (cause == CauseServerClose && e.died.Truncate(time.Second) >= sv.silence.Truncate(time.Second)) {
		// A death tested at the server's own timeout is the server's.
		e.died, e.cause, e.how = sv.silence, cause, sv.end
	}
}

// unprobed counts the flows, open or to come in this pass, whose silence
// still counts from their last data.
func (e *engine) unprobed() int {
	n := len(e.toDial)
	if e.reserveAt >= 0 {
		n += reserves
	}
	for _, f := range e.flows {
		if (f.state == fsParked || f.state == fsFired || f.state == fsDialing) && !f.refreshed && f.listenX == 0 {
			n++
		}
	}
	return n
}

// plural writes n and the noun, "1 pass", "3 passes".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

func tolerance(d time.Duration) time.Duration { return max(time.Second, d/50) }

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}

// assignRetests gives each point waiting for a test the free flow that
// can test it soonest: the one silent longest, but for less than x −
// lead, so that its probe leaves after exactly x of silence. When none can
// and none is coming, it dials a reserve.
func (e *engine) assignRetests(now time.Duration) {
	slices.SortFunc(e.queue, func(a, b *point) int { return int(a.x - b.x) })
	e.queue = slices.Compact(e.queue)
	kept := e.queue[:0]
	for _, p := range e.queue {
		if p.state != psSuspect && p.state != psRetest {
			continue
		}
		if !e.needed(p.x) {
			e.discard(p, false, p.end)
			continue
		}
		want := 1
		if p.state == psSuspect {
			want = confirmations(p.end) - p.deaths
		}
		for _, f := range e.flows {
			if f.point == p && f.state != fsClosed {
				want--
			}
		}
		for ; want > 0; want-- {
			var best *flow
			for _, f := range e.flows {
				if !f.free() || now-f.last > p.x-lead {
					continue
				}
				if best == nil || f.last < best.last {
					best = f
				}
			}
			if best == nil {
				kept = append(kept, p)
				break
			}
			best.point = p
		}
	}
	e.queue = kept
	if len(e.queue) == 0 || e.reserveAt >= 0 || e.reservesOut > 0 || e.testsOut > 0 || len(e.toDial) > 0 {
		return
	}
	// A re-test under way of a shorter silence may settle the rest: if
	// it confirms the death, the longer ones are not needed.
	for _, f := range e.flows {
		if f.point != nil && f.point.x < e.queue[0].x && f.point.state == psSuspect && f.state != fsClosed {
			return
		}
	}
	if e.open >= e.s.flows {
		// Make room: a free flow silent too long to test what is
		// waiting is of no use; the one refreshed last is the least
		// use as a witness.
		var victim *flow
		for _, f := range e.flows {
			if f.free() && (victim == nil || f.last-f.lastData < victim.last-victim.lastData) {
				victim = f
			}
		}
		if victim != nil {
			e.closeFlow(victim)
		}
	}
	if e.room() {
		e.reservesOut++
		e.dialFlow(e.newFlow(reserveFlow))
	}
}

// settle re-tests what waits, ends the pass when its answer is known, and
// reports progress.
func (e *engine) settle(now time.Duration) {
	if e.done {
		return
	}
	if e.err == nil {
		e.decide(now)
		e.assignRetests(now)
	}
	if e.err == nil && !e.passDone() {
		e.report(now, false)
		return
	}
	for _, f := range e.flows {
		e.closeFlow(f)
	}
	if e.err == nil && e.needsPass() {
		if e.pass < e.maxPasses {
			e.startPass(now)
			e.report(now, true)
			return
		}
		hi := e.s.max
		if e.died != 0 {
			hi = e.died
		}
		e.fail(fmt.Errorf("keepalive: %s: after %s, silences between %v and %v are still untested: their connections were lost to something other than the path (the server ended or refused them, or sent segments of its own)",
			e.s.address, plural(e.pass, "pass", "passes"), e.survived(), hi))
	}
	e.done, e.end = true, now
	e.report(now, true)
}

// passDone reports whether every point of the pass that could still
// narrow the bounds has been decided, and nothing else is pending: who
// ended the flows, or whether a flow heard from is heard from again.
func (e *engine) passDone() bool {
	if e.server != nil && !e.server.decided {
		return false
	}
	if e.listening() {
		return false
	}
	for _, p := range e.points {
		if (p.state == psPending || p.state == psSuspect || p.state == psRetest) && e.needed(p.x) {
			return false
		}
	}
	return true
}

// needsPass reports whether ladder points remain untested between the
// bounds.
func (e *engine) needsPass() bool {
	for _, x := range e.full {
		if e.needed(x) {
			return true
		}
	}
	return false
}

func (e *engine) fail(err error) {
	if e.err == nil {
		e.err = err
	}
}

// stop ends the search at now with err, closing every flow.
func (e *engine) stop(now time.Duration, err error) {
	e.fail(err)
	for _, f := range e.flows {
		e.closeFlow(f)
	}
	if !e.done {
		e.done, e.end = true, now
	}
}

// report calls the progress callback when something changed, or always
// when force is set.
func (e *engine) report(now time.Duration, force bool) {
	if e.s.progress == nil {
		return
	}
	p := Progress{Elapsed: now, Pass: e.pass, Open: e.open, Survived: e.survived(), Died: e.died}
	q := e.reported
	q.Elapsed = now
	if !force && p == q {
		return
	}
	e.reported = p
	e.s.progress(p)
}

func (e *engine) result() Result {
	r := Result{
		Survived:   e.survived(),
		Died:       e.died,
		Cause:      e.cause,
		End:        e.how,
		Elapsed:    e.end,
		Flows:      e.opened,
		Passes:     e.pass,
		Retests:    e.retests,
		Spurious:   e.spurious,
		Unaccepted: e.unaccepted,
		Refused:    e.refused,
		Resent:     e.resent,
		Address:    e.s.address,
		Heard:      e.ceiling,
	}
	if e.died == 0 {
		r.Cause, r.End = CauseNone, EndNone
	}
	if r.Cause == CauseServerClose && e.server != nil {
		r.Spoke = e.server.spoke
	}
	return r
}
