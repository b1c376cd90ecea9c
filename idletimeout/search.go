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

	// park is the Idle of a flow that waits for its test: the longest the
	// kernel takes (MAX_TCP_KEEPIDLE), so that it sends no probe of its
	// own during a search.
	park = 32767 * time.Second

	// extraPasses is how many passes beyond the planned ones a search may
	// take to re-test points whose flows were lost to something other than
	// the path (a connection the server reset by itself).
	extraPasses = 2
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
	kind  eventKind
	id    flowID
	at    time.Duration // when, since the search started
	ackAt time.Duration // evAnswered: when the answer arrived
	end   endKind       // evEnded
	err   error         // evDialFailed, evEnded
	conn  net.Conn      // evOpened from the network driver; the engine ignores it
}

// driver carries out the engine's requests. The results come back as
// events.
type driver interface {
	// dial starts to connect the flow; evOpened or evDialFailed follows.
	dial(id flowID)
	// fire sets the flow's Idle to idle, so that the kernel sends a probe
	// once the flow has been silent that long, or at once if it already
	// has; evAnswered or evEnded follows. It does not when the flow has
	// received segments since its last data: fireHeard when they carried
	// none (keepalive probes of the server's, which keep the path's
	// middleboxes from counting the silence), fireData when they carried
	// data, whose event is on its way.
	fire(id flowID, idle time.Duration) fireResult
	// park sets the flow's Idle back to park.
	park(id flowID)
	// close closes the flow, or abandons its dial; no event follows.
	close(id flowID)
}

type fireResult int

const (
	fired fireResult = iota
	fireHeard
	fireData
)

type role int

const (
	testFlow    role = iota // tests one point of a pass's ladder
	reserveFlow             // waits to re-test a point whose flow died
)

type flowState int

const (
	fsNew     flowState = iota // not dialed yet
	fsDialing                  // connecting
	fsParked                   // connected, silent, Idle parked
	fsFired                    // Idle set to its test's silence
	fsClosed
)

type flow struct {
	id       flowID
	role     role
	state    flowState
	last     time.Duration // the last packet received: the kernel counts silence from it
	lastData time.Duration // connected, or the last data received: a server counts idleness from it
	// refreshed reports that a probe of the flow has been answered, so
	// that its silence no longer counts from lastData.
	refreshed bool
	point     *point        // the point it tests; nil for an idle reserve
	firedAt   time.Duration // fsFired: when the probe was due
}

// armAt returns when the flow's Idle must be set for its probe to leave
// after point.x of silence.
func (f *flow) armAt() time.Duration {
	return f.last + f.point.x - lead
}

type pointState int

const (
	psPending  pointState = iota
	psSurvived            // a probe after x of silence was answered
	psSuspect             // its flow died; a re-test decides
	psDied                // confirmed: the path loses a flow silent for x
	psVoid                // nothing learned, or no longer needed
)

// point is one silence tested in a pass.
type point struct {
	x     time.Duration
	state pointState
	cause Cause // psSuspect, psDied: how the flow was lost
}

// activeEnd is a connection that ended without having been probed: the
// server closed it, or something on the path reset it, by itself.
type activeEnd struct {
	silence time.Duration
	cause   Cause
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

	pass        int
	points      []*point      // this pass's, ascending
	toDial      []*flow       // this pass's test flows not yet dialed, ascending
	dialing     int           // dials in flight
	testsOut    int           // this pass's test flows not yet connected
	reserveAt   time.Duration // when this pass's reserves are due; <0 when not
	reservesOut int           // reserves dialing
	queue       []*point      // suspects waiting for a reserve
	active      []activeEnd

	survivors []time.Duration
	died      time.Duration
	cause     Cause
	// ceiling is the shortest silence within which a flow was heard
	// from without data: no silence from it on can be measured. Zero
	// when none was.
	ceiling time.Duration
	// heard holds the silences within which flows were heard from
	// without data, confirmed or not.
	heard []time.Duration

	retests, spurious int
	err               error
	done              bool
	end               time.Duration

	reported Progress
}

func newEngine(s settings, d driver) *engine {
	e := &engine{s: s, d: d, full: ladder(s.max), reserveAt: -1}
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
		if x > lo && (hi == 0 || x < hi) {
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
	e.dialMore()
}

func (e *engine) newFlow(r role) *flow {
	f := &flow{id: flowID(len(e.flows)), role: r}
	e.flows = append(e.flows, f)
	return f
}

// dialMore dials test flows in ascending order of their silence, one
// until the address has answered, then up to dialConcurrency at once.
func (e *engine) dialMore() {
	limit := dialConcurrency
	if !e.connected {
		limit = 1
	}
	for e.dialing < limit && len(e.toDial) > 0 {
		f := e.toDial[0]
		e.toDial = e.toDial[1:]
		e.dialFlow(f)
	}
}

func (e *engine) dialFlow(f *flow) {
	f.state = fsDialing
	e.open++
	e.dialing++
	e.d.dial(f.id)
}

// survived returns the longest silence a flow was seen to survive, below
// the shortest that killed one.
func (e *engine) survived() time.Duration {
	var l time.Duration
	for _, x := range e.survivors {
		if x > l && (e.died == 0 || x < e.died) {
			l = x
		}
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
	at, ok := e.reserveAt, e.reserveAt >= 0
	for _, f := range e.flows {
		if f.state == fsParked && f.point != nil {
			if t := f.armAt(); !ok || t < at {
				at, ok = t, true
			}
		}
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
			if e.open < e.s.flows {
				e.reservesOut++
				e.dialFlow(e.newFlow(reserveFlow))
			}
		}
	}
	for _, f := range e.flows {
		if f.state != fsParked || f.point == nil || now < f.armAt() {
			continue
		}
		p := f.point
		if (p.state != psPending && p.state != psSuspect) || !e.needed(p.x) {
			// Learned otherwise meanwhile.
			if p.state == psPending || p.state == psSuspect {
				e.discard(p, false)
			}
			e.release(f)
			continue
		}
		switch e.d.fire(f.id, p.x) {
		case fireData:
			// Its event follows; count the silence from now meanwhile.
			f.last, f.lastData = now, now
			continue
		case fireHeard:
			// Segments without data crossed the path within p.x of
			// silence: the server may probe idle connections itself,
			// and then the path never sees a silence this long.
			e.heardWithin(p.x)
			e.discard(p, false)
			e.release(f)
			continue
		}
		if f.role == reserveFlow {
			e.retests++
		}
		f.state = fsFired
		f.firedAt = max(now, f.last+p.x)
	}
	e.settle(now)
}

// release ends a flow's assignment: a test flow is closed, a reserve is
// parked for another re-test.
func (e *engine) release(f *flow) {
	f.point = nil
	if f.role == testFlow {
		e.closeFlow(f)
		return
	}
	if f.state == fsFired {
		f.state = fsParked
		e.d.park(f.id)
	}
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
			e.openedFlow(f, ev.at)
		}
	case evDialFailed:
		if f.state == fsDialing {
			e.dialFailed(f, ev.err)
		}
	case evData:
		if f.state == fsParked || f.state == fsFired {
			f.last, f.lastData = ev.at, ev.at
			if f.state == fsFired {
				// The data crossed the path after the probe was due.
				e.answered(f, ev.at)
			}
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

func (e *engine) openedFlow(f *flow, at time.Duration) {
	e.dialing--
	f.state = fsParked
	f.last, f.lastData = at, at
	e.opened++
	e.connected = true
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
	e.dialMore()
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

// answered records that f's probe, due after its point's silence, was
// answered, and the answer arrived at ackAt.
func (e *engine) answered(f *flow, ackAt time.Duration) {
	f.last = ackAt
	f.refreshed = true
	if p := f.point; p != nil {
		e.survive(p)
	}
	e.release(f)
}

func (e *engine) survive(p *point) {
	if p.state == psSuspect {
		e.spurious++
	}
	p.state = psSurvived
	e.survivors = append(e.survivors, p.x)
}

func (e *engine) ended(f *flow, ev event) {
	prev := f.state
	p := f.point
	f.point = nil
	f.state = fsClosed
	e.open--
	silence := ev.at - f.lastData
	if prev == fsFired && p != nil {
		switch ev.end {
		case endEOF:
			// The FIN crossed the path after the probe was due: the
			// flow was still known there.
			if ev.at-f.last >= p.x {
				e.survive(p)
			} else {
				e.lost(p)
			}
		case endReset:
			// A reset within half an interval of the first probe
			// answers it: nothing lost, the path forgot the flow. A
			// later one answers a later probe, the first having gone
			// unanswered: it may have been lost, so re-test.
			e.death(f, p, CauseReset, ev.at-f.firedAt < e.s.interval/2)
		default:
			e.death(f, p, CauseDrop, false)
		}
	} else if p != nil {
		e.lost(p)
	}
	if !f.refreshed && (ev.end == endEOF || ev.end == endReset) && (prev == fsParked || ev.end == endEOF) {
		cause := CauseServerClose
		if ev.end == endReset {
			cause = CauseReset
		}
		e.activeEnd(silence, cause)
	}
}

// lost records that p's flow ended without telling anything about p.
func (e *engine) lost(p *point) {
	switch p.state {
	case psPending:
		p.state = psVoid
	case psSuspect:
		e.queue = append(e.queue, p)
	}
}

// death records that f, testing p, ended with its probes unanswered or
// reset. confirmed says the way it ended rules out lost packets.
func (e *engine) death(f *flow, p *point, cause Cause, confirmed bool) {
	if !e.needed(p.x) {
		e.discard(p, true)
		return
	}
	if confirmed || f.role == reserveFlow {
		p.state, p.cause = psDied, cause
		if e.died == 0 || p.x < e.died {
			e.died, e.cause = p.x, cause
		}
		return
	}
	p.state, p.cause = psSuspect, cause
	e.queue = append(e.queue, p)
}

// discard marks p void, no longer needed. A death of it that a flow kept
// for a longer silence contradicts was lost packets: counted as spurious.
// died says its flow has just died.
func (e *engine) discard(p *point, died bool) {
	if (died || p.state == psSuspect) && p.x <= e.survived() {
		e.spurious++
	}
	p.state = psVoid
}

// heardWithin records a flow heard from without data within x of silence.
// One such flow may have heard a segment of its own handshake sent again,
// on a path that lost one: only a second flow heard within
// max(1s, 2%) of the first confirms that the server probes idle
// connections, and sets the ceiling.
func (e *engine) heardWithin(x time.Duration) {
	for _, h := range e.heard {
		if absDiff(h, x) <= tolerance(max(h, x)) {
			if c := min(h, x); e.ceiling == 0 || c < e.ceiling {
				e.ceiling = c
			}
		}
	}
	e.heard = append(e.heard, x)
}

// activeEnd records a connection that ended, silent and unprobed, after
// silence. Two such ends within max(1s, 2%) of each other, or one when no
// other unprobed flow could confirm it, show that the server or the path
// closes idle connections by itself.
func (e *engine) activeEnd(silence time.Duration, cause Cause) {
	if silence < time.Second {
		e.fail(fmt.Errorf("keepalive: %s closed or reset a connection %v after it opened, before it was idle for a second: it may limit connections from one client (lower Flows, now %d), or not hold idle connections at all",
			e.s.address, silence.Round(time.Millisecond), e.s.flows))
		return
	}
	confirmed := false
	for _, a := range e.active {
		if a.cause == cause && absDiff(a.silence, silence) <= tolerance(max(a.silence, silence)) {
			confirmed = true
			silence = min(silence, a.silence)
		}
	}
	e.active = append(e.active, activeEnd{silence, cause})
	if !confirmed && e.unprobed() > 0 {
		return
	}
	if e.died == 0 || silence < e.died {
		e.died, e.cause = silence, cause
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
		if (f.state == fsParked || f.state == fsFired || f.state == fsDialing) && !f.refreshed {
			n++
		}
	}
	return n
}

func tolerance(d time.Duration) time.Duration { return max(time.Second, d/50) }

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}

// assignRetests gives each suspect still needed the reserve that can test
// it soonest: the one silent longest, but for less than x − lead, so that
// its probe leaves after exactly x of silence. When none can and none is
// coming, it dials one.
func (e *engine) assignRetests(now time.Duration) {
	slices.SortFunc(e.queue, func(a, b *point) int { return int(a.x - b.x) })
	kept := e.queue[:0]
	for _, p := range e.queue {
		if p.state != psSuspect {
			continue
		}
		if !e.needed(p.x) {
			e.discard(p, false)
			continue
		}
		var best *flow
		for _, f := range e.flows {
			if f.role != reserveFlow || f.state != fsParked || f.point != nil || now-f.last > p.x-lead {
				continue
			}
			if best == nil || f.last < best.last {
				best = f
			}
		}
		if best == nil {
			kept = append(kept, p)
			continue
		}
		best.point = p
	}
	e.queue = kept
	if len(e.queue) == 0 || e.reserveAt >= 0 || e.reservesOut > 0 || e.testsOut > 0 {
		return
	}
	// A re-test under way of a shorter silence may settle the rest: if
	// it confirms the death, the longer ones are not needed.
	for _, f := range e.flows {
		if f.role == reserveFlow && f.point != nil && f.point.x < e.queue[0].x && f.state != fsClosed {
			return
		}
	}
	if e.open >= e.s.flows {
		// Make room: a reserve silent too long to re-test what is
		// waiting is of no use.
		for _, f := range e.flows {
			if f.role == reserveFlow && f.state == fsParked && f.point == nil {
				e.closeFlow(f)
				break
			}
		}
	}
	if e.open < e.s.flows {
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
		e.assignRetests(now)
	}
	if e.err == nil && !e.passDone() {
		e.report(now, false)
		return
	}
	for _, f := range e.flows {
		e.closeFlow(f)
	}
	if e.err == nil && e.pass < e.maxPasses && e.needsPass() {
		e.startPass(now)
		e.report(now, true)
		return
	}
	e.done, e.end = true, now
	e.report(now, true)
}

// passDone reports whether every point of the pass that could still
// narrow the bounds has been decided.
func (e *engine) passDone() bool {
	for _, p := range e.points {
		if (p.state == psPending || p.state == psSuspect) && e.needed(p.x) {
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
		Survived: e.survived(),
		Died:     e.died,
		Cause:    e.cause,
		Elapsed:  e.end,
		Flows:    e.opened,
		Passes:   e.pass,
		Retests:  e.retests,
		Spurious: e.spurious,
		Address:  e.s.address,
		Heard:    e.ceiling,
	}
	if e.died == 0 {
		r.Cause = CauseNone
	}
	return r
}
