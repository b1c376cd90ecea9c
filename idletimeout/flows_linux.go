package idletimeout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

const (
	// pollInterval is how often the flows whose probe is out are asked
	// (TCP_INFO) whether it was answered.
	pollInterval = 10 * time.Millisecond

	// tcpEstablished is TCP_INFO's state of an established connection
	// (TCP_ESTABLISHED, include/net/tcp_states.h).
	tcpEstablished = 1

	// answeredSlack separates, in TCP_INFO's time since the last ACK, an
	// answer to the probe (at most the time since the flow was fired) from
	// the silence before it (at least the time since it was fired plus
	// 1s − lead): it covers the kernel's rounding to jiffies.
	answeredSlack = 300 * time.Millisecond
)

// run searches with the flows of the network, from start.
func run(ctx context.Context, s settings, start time.Time) (Result, error) {
	dctx, cancel := context.WithCancel(ctx)
	d := &netDriver{
		s:      s,
		ctx:    dctx,
		start:  start,
		events: make(chan event, 256),
		flows:  make(map[flowID]*netFlow),
		firing: make(map[flowID]*netFlow),
		parked: keepalive.Config{Idle: park, Interval: s.interval, Count: s.count},
	}
	e := newEngine(s, d)
	defer func() {
		// Every connection closed, every goroutine of the search ended.
		cancel()
		for _, nf := range d.flows {
			nf.close()
		}
		d.wg.Wait()
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()

	e.start(d.now())
	for !e.done {
		var timerC <-chan time.Time
		if at, ok := e.next(); ok {
			timer.Reset(max(at-d.now(), 0))
			timerC = timer.C
		}
		var pollC <-chan time.Time
		if len(d.firing) > 0 {
			pollC = poll.C
		}
		select {
		case ev := <-d.events:
			if d.accept(&ev) {
				e.handle(ev)
			}
		case <-timerC:
			e.tick(d.now())
		case <-pollC:
			d.poll(e)
		case <-second.C:
			e.report(d.now(), true)
		case <-ctx.Done():
			e.stop(d.now(), fmt.Errorf("keepalive: search for the idle timeout of %s stopped: %w", s.address, ctx.Err()))
		}
	}
	return e.result(), e.err
}

// netDriver carries out the engine's requests on real connections. Its
// methods are called from the search's goroutine only; the goroutines it
// starts (one per dial, one reader per connection) report by events.
type netDriver struct {
	s      settings
	ctx    context.Context // ends with the search
	start  time.Time
	events chan event
	flows  map[flowID]*netFlow
	firing map[flowID]*netFlow // fired, probe not yet answered
	parked keepalive.Config
	wg     sync.WaitGroup
}

type netFlow struct {
	cancel  context.CancelFunc // ends the dial
	conn    net.Conn
	tcp     *net.TCPConn
	firedAt time.Time
	closed  bool
	// segs and dataSegs are TCP_INFO's segments received, and those with
	// data, when the flow last fell silent.
	segs, dataSegs uint32
}

// quiet records the segments received so far, as the start of a silence,
// once the kernel has sent the ACK it owes: data received last (a login's
// last answer, a greeting) is acknowledged up to 200ms later, and that ACK
// is a packet that the middleboxes count, which the kernel's keepalive
// timer does not. TCP_QUICKACK sends it now.
func (nf *netFlow) quiet() {
	if nf.tcp != nil {
		if rc, err := nf.tcp.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) {
				unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, 1)
			})
		}
	}
	if ti, err := tcpInfo(nf.tcp); err == nil {
		nf.segs, nf.dataSegs = ti.Segs_in, ti.Data_segs_in
	}
}

func (nf *netFlow) close() {
	nf.closed = true
	if nf.cancel != nil {
		nf.cancel()
	}
	if nf.conn != nil {
		nf.conn.Close()
	}
}

func (d *netDriver) now() time.Duration { return time.Since(d.start) }

// send delivers ev to the search, unless it has ended.
func (d *netDriver) send(ev event) bool {
	select {
	case d.events <- ev:
		return true
	case <-d.ctx.Done():
		return false
	}
}

func (d *netDriver) dial(id flowID) {
	ctx, cancel := context.WithTimeout(d.ctx, d.s.dialTimeout)
	d.flows[id] = &netFlow{cancel: cancel}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer cancel()
		conn, err := d.connect(ctx)
		ev := event{kind: evOpened, id: id, at: d.now(), conn: conn}
		if err != nil {
			ev = event{kind: evDialFailed, id: id, at: ev.at, err: d.describe(err)}
		}
		if !d.send(ev) && conn != nil {
			conn.Close()
		}
	}()
}

// connect dials the address with keepalive parked: on, with the test's
// Interval and Count, and an Idle too long for any probe to leave by
// itself during the search.
func (d *netDriver) connect(ctx context.Context) (net.Conn, error) {
	if d.s.dial == nil {
		kd := keepalive.Dialer{Config: d.parked}
		return kd.DialContext(ctx, "tcp", d.s.address)
	}
	conn, err := d.s.dial(ctx, "tcp", d.s.address)
	if err != nil {
		return nil, err
	}
	if err := keepalive.Set(conn, d.parked); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// describe says what a failed dial means. An error of a Dial of the
// caller's that is not the network's (a login that failed) says it
// itself.
func (d *netDriver) describe(err error) error {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("refused the connection: %w", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("did not answer within %v: %w", d.s.dialTimeout, err)
	case d.s.dial != nil && !errors.As(err, &ne):
		return err
	default:
		return fmt.Errorf("could not be reached: %w", err)
	}
}

// accept does the driver's part of an event and reports whether the
// engine must see it: events of flows closed meanwhile are dropped.
func (d *netDriver) accept(ev *event) bool {
	nf := d.flows[ev.id]
	if nf == nil {
		return false
	}
	if nf.closed {
		if ev.conn != nil {
			ev.conn.Close()
		}
		return false
	}
	switch ev.kind {
	case evOpened:
		nf.cancel = nil
		nf.conn = ev.conn
		nf.tcp = tcpConn(ev.conn)
		if ti, err := tcpInfo(nf.tcp); err == nil {
			ev.resent = ti.Total_retrans > 0
			// The kernel counts silence from the last packet it
			// received, which the dialing goroutine may have seen
			// late on a busy machine: the search counts from the
			// same moment.
			ev.at = min(ev.at, d.now()-time.Duration(ti.Last_ack_recv)*time.Millisecond)
		}
		nf.quiet()
		d.wg.Add(1)
		go d.read(ev.id, ev.conn)
	case evData:
		if ti, err := tcpInfo(nf.tcp); err == nil {
			ev.at = min(ev.at, d.now()-time.Duration(ti.Last_data_recv)*time.Millisecond)
		}
		nf.quiet()
	case evDialFailed:
		nf.closed = true
	case evEnded:
		delete(d.firing, ev.id)
		nf.close()
	}
	return true
}

// read reads conn until it ends, reporting data and the end.
func (d *netDriver) read(id flowID, conn net.Conn) {
	defer d.wg.Done()
	buf := make([]byte, 512)
	for {
		n, err := conn.Read(buf)
		if n > 0 && !d.send(event{kind: evData, id: id, at: d.now()}) {
			return
		}
		if err == nil {
			continue
		}
		if !errors.Is(err, net.ErrClosed) {
			d.send(event{kind: evEnded, id: id, at: d.now(), end: endOf(err), err: err})
		}
		return
	}
}

func endOf(err error) endKind {
	switch {
	case errors.Is(err, io.EOF):
		return endEOF
	case errors.Is(err, syscall.ECONNRESET):
		return endReset
	case errors.Is(err, syscall.ETIMEDOUT):
		return endTimeout
	default:
		return endOther
	}
}

func (d *netDriver) heard(id flowID) heardKind {
	nf := d.flows[id]
	ti, err := tcpInfo(nf.tcp)
	switch {
	case err != nil || ti.Segs_in == nf.segs:
		// An error means the connection has just ended: its reader
		// says how.
		return heardNothing
	case ti.Data_segs_in != nf.dataSegs:
		return heardData
	}
	return heardSegments
}

func (d *netDriver) fire(id flowID, idle time.Duration) {
	nf := d.flows[id]
	// An error means the connection has just ended: its reader says how.
	_ = keepalive.Set(nf.conn, keepalive.Config{Idle: idle, Interval: d.s.interval, Count: d.s.count})
	nf.firedAt = time.Now()
	d.firing[id] = nf
}

func (d *netDriver) park(id flowID) {
	nf := d.flows[id]
	delete(d.firing, id)
	_ = keepalive.Set(nf.conn, d.parked)
	nf.quiet()
}

func (d *netDriver) close(id flowID) {
	delete(d.firing, id)
	if nf := d.flows[id]; nf != nil {
		nf.close()
	}
}

// poll asks the kernel, for each flow whose probe is out, whether an
// answer has arrived since it was fired: no probe outstanding, and an ACK
// more recent than the firing, on a connection still established (a FIN
// is an ACK too, and its reader reports the end).
func (d *netDriver) poll(e *engine) {
	for id, nf := range d.firing {
		ti, err := tcpInfo(nf.tcp)
		if err != nil || ti.State != tcpEstablished {
			continue
		}
		ackAge := time.Duration(ti.Last_ack_recv) * time.Millisecond
		if ti.Probes != 0 || ackAge >= time.Since(nf.firedAt)+answeredSlack {
			continue
		}
		delete(d.firing, id)
		now := d.now()
		e.handle(event{kind: evAnswered, id: id, at: now, ackAt: now - ackAge})
	}
}

// tcpInfo returns what TCP_INFO reports for the connection: the keepalive
// probes sent and not answered (Probes), the milliseconds since the last
// ACK arrived (Last_ack_recv), the segments received (Segs_in) and those
// with data (Data_segs_in).
func tcpInfo(tc *net.TCPConn) (*unix.TCPInfo, error) {
	if tc == nil {
		return nil, errors.New("not TCP")
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var ti *unix.TCPInfo
	var gerr error
	if err := rc.Control(func(fd uintptr) {
		ti, gerr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		return nil, err
	}
	if gerr != nil {
		return nil, os.NewSyscallError("getsockopt", gerr)
	}
	return ti, nil
}

// tcpConn finds the *net.TCPConn in conn, following NetConn methods; nil
// if there is none.
func tcpConn(conn net.Conn) *net.TCPConn {
	for conn != nil {
		switch c := conn.(type) {
		case *net.TCPConn:
			return c
		case interface{ NetConn() net.Conn }:
			conn = c.NetConn()
		default:
			return nil
		}
	}
	return nil
}
