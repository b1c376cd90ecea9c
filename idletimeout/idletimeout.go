package idletimeout

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/keepalive-go/keepalive"
)

// Defaults and limits of [Options].
const (
	defaultMax         = 2 * time.Hour
	minMax             = 2 * time.Second
	maxMax             = park // a test's silence is an Idle: at most MAX_TCP_KEEPIDLE
	defaultInterval    = time.Second
	maxInterval        = 32767 * time.Second // MAX_TCP_KEEPINTVL
	defaultCount       = 2
	maxCount           = 127 // MAX_TCP_KEEPCNT
	defaultDialTimeout = 10 * time.Second
	minFlows           = reserves + 2
)

// Options configures [Find]. The zero Options looks for a timeout of up to
// two hours in one pass.
type Options struct {
	// Max is the longest idle timeout looked for: a path that keeps a flow
	// silent for Max is reported with CauseNone, after about Max. It must
	// be a whole number of seconds from 2s to 32767s (the longest Idle the
	// kernel takes). Zero means two hours.
	Max time.Duration

	// Flows is the most connections the search holds open at once. Zero
	// means as many as one pass needs for Max, which [Plan] reports: 331
	// for two hours, 167 for 5 minutes. Fewer make the search take more
	// passes, with the same resolution, each lasting up to its first tested
	// silence past the timeout: with 50, two passes and up to 2.3 times the
	// timeout (see the package documentation). It must be 0 or at least 4.
	Flows int

	// Interval is the time between the probes of a flow under test
	// (TCP_KEEPINTVL): a flow whose probes go unanswered is declared lost
	// Count·Interval after its first probe. It must be a whole number of
	// seconds from 1s to 32767s. Zero means 1s.
	Interval time.Duration

	// Count is how many probes of a flow under test may go unanswered
	// before it is declared lost (TCP_KEEPCNT), from 1 to 127. Zero means
	// 2, so that a single lost probe does not lose a flow.
	Count int

	// DialTimeout bounds each connect. Zero means 10s; negative is
	// invalid.
	DialTimeout time.Duration

	// Dial connects to the address, which Find has resolved to an IP
	// address and port, and returns the connection whose silence is
	// measured. If nil, a [keepalive.Dialer] connects, and the server
	// meets connections on which nothing is said: one that ends
	// connections that do not log in within a time (PostgreSQL's
	// authentication_timeout, MySQL's connect_timeout, sshd's
	// LoginGraceTime) hides the path beyond that time.
	//
	// Dial may set up a session before it returns, logging in as a
	// database client does, so that the server holds each connection as an
	// idle session, subject only to its timeout for idle sessions, if it
	// has one: the search counts silence from when Dial returns, and from
	// then on reads the connection for data the server sends, so Dial must
	// leave nothing unread that the server has sent. Find ends each
	// connection with its Close method, which may end the session first
	// (a PostgreSQL Terminate message, a MySQL COM_QUIT).
	//
	// The connection must be a [*net.TCPConn], or wrap one through a
	// NetConn method (as a [crypto/tls.Conn] does); its keepalive is set with
	// [keepalive.Set]. Dial is called from several goroutines at once,
	// with a context that ends at DialTimeout or when the search ends. An
	// error from the first call fails Find with that error, named after
	// the address; a later one, with an error that says how many
	// connections were open.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)

	// Progress, if not nil, is called from Find's goroutine when the
	// search starts, when the bounds, the pass or the number of open
	// connections change, and about once a second. The search waits for
	// it, so it must return quickly. Nil reports nothing.
	Progress func(Progress)
}

// Progress is the state of a search, passed to [Options.Progress].
type Progress struct {
	// Elapsed is the time since the search started.
	Elapsed time.Duration

	// Pass counts the passes begun, from 1.
	Pass int

	// Open is the number of connections open or connecting.
	Open int

	// Survived is the longest silence after which a flow was seen to be
	// kept so far; zero before any was. Died is the shortest that lost one,
	// zero before any did.
	Survived, Died time.Duration
}

// Cause is how the path, or the server, ended an idle connection.
type Cause int

const (
	// CauseNone: no flow was lost; the path kept them silent for Max, or
	// for as long as could be measured (see Result.Heard).
	CauseNone Cause = iota

	// CauseDrop: the probes of a flow silent for Died went unanswered and
	// the kernel declared it dead (ETIMEDOUT), and so did a second flow's
	// after the same silence: something on the path, a firewall, NAT or
	// load balancer, forgot the flow and drops its packets without a
	// word.
	CauseDrop

	// CauseReset: something on the path forgot flows silent for Died and
	// reset them: a reset answered the probe of a flow silent that long,
	// and a second flow's (End EndProbeReset), or reset flows by itself
	// after Died of silence counted from their last packet, keepalive
	// probes included (End EndReset), as load balancers that reset both
	// ends of the flows they forget do.
	CauseReset

	// CauseServerClose: the server ended connections by itself, by FIN
	// or by reset (End says which), after Died of silence counted from
	// the last data it received or sent: keepalive probes do not count for
	// it, only data does. Whether it ends connections that never log in
	// (a login timeout) or idle ones is the caller's to tell: the server
	// met connections as [Options.Dial] left them.
	CauseServerClose
)

var causeNames = [...]string{"none", "drop", "reset", "server-close"}

// String returns "none", "drop", "reset" or "server-close".
func (c Cause) String() string {
	if c < 0 || int(c) >= len(causeNames) {
		return "Cause(" + strconv.Itoa(int(c)) + ")"
	}
	return causeNames[c]
}

// MarshalText implements [encoding.TextMarshaler] with the names of
// [Cause.String].
func (c Cause) MarshalText() ([]byte, error) {
	if c < 0 || int(c) >= len(causeNames) {
		return nil, fmt.Errorf("keepalive: invalid Cause %d", int(c))
	}
	return []byte(causeNames[c]), nil
}

// End is how the connections lost after Result.Died ended, which is how
// their Cause was known.
type End int

const (
	// EndNone: no connection was lost.
	EndNone End = iota

	// EndUnanswered: a flow's keepalive probes went unanswered
	// (ETIMEDOUT), and a second flow's after the same silence.
	EndUnanswered

	// EndProbeReset: a reset answered a flow's keepalive probe, and a
	// second flow's after the same silence.
	EndProbeReset

	// EndReset: connections were reset before any probe of theirs, two
	// after the same silence. A connection whose probe had been answered
	// tells whose clock reset them: counted from its last data, the
	// server's (CauseServerClose); from the answer, a middlebox's
	// (CauseReset). With no such connection, the server is taken to have
	// reset them.
	EndReset

	// EndFIN: connections were closed by a FIN before any probe of
	// theirs, two after the same silence: the server closed them
	// (CauseServerClose).
	EndFIN
)

var endNames = [...]string{"none", "unanswered", "probe-reset", "reset", "fin"}

// String returns "none", "unanswered", "probe-reset", "reset" or "fin".
func (e End) String() string {
	if e < 0 || int(e) >= len(endNames) {
		return "End(" + strconv.Itoa(int(e)) + ")"
	}
	return endNames[e]
}

// MarshalText implements [encoding.TextMarshaler] with the names of
// [End.String].
func (e End) MarshalText() ([]byte, error) {
	if e < 0 || int(e) >= len(endNames) {
		return nil, fmt.Errorf("keepalive: invalid End %d", int(e))
	}
	return []byte(endNames[e]), nil
}

// Result is what [Find] learned of a path.
type Result struct {
	// Survived is the longest silence the path was seen to keep a flow
	// for, a whole number of seconds: a keepalive probe sent after it was
	// answered. With CauseServerClose it is Died truncated to whole
	// seconds, since the server's FIN or reset crossed the path after that
	// silence: the path keeps flows at least that long, and its own idle
	// timeout, if it has one, is longer and hidden by the server's. With
	// CauseNone it is Max, unless Heard is set. Zero if no flow survived
	// the shortest silence tested, 1s.
	Survived time.Duration

	// Died is the shortest silence after which a flow was lost, and Cause
	// says how. With CauseDrop, and CauseReset with EndProbeReset, it is a
	// tested silence, a whole number of seconds, and the path's idle
	// timeout lies between Survived (excluded) and Died (included). With
	// EndReset and EndFIN it is the silence measured from the
	// connections' last data to their end. Zero with CauseNone.
	Died time.Duration

	// Cause is how the flow silent for Died was lost.
	Cause Cause

	// End is how the connections lost after Died ended; EndNone with
	// CauseNone.
	End End

	// Spoke reports, with CauseServerClose, that the server had sent data
	// on the connections it ended, after [Options.Dial] returned them and
	// before it ended them: it speaks first (a greeting, as MySQL, MariaDB
	// and SSH servers send) and then ends a connection that does not
	// answer.
	Spoke bool

	// Elapsed is the time from the call to the answer.
	Elapsed time.Duration

	// Flows is the number of connections opened in all.
	Flows int

	// Passes is the number of passes the search took.
	Passes int

	// Retests counts the flows lost after a silence that another flow
	// then tested again, since something other than the path could explain
	// the loss; Spurious counts the losses that a re-test, or a flow kept
	// for a longer silence, showed to be lost packets rather than a
	// forgotten flow.
	Retests, Spurious int

	// Unaccepted counts the connections reset in answer to a probe after
	// a silence that another flow was then seen to keep: the server's
	// kernel did not know them, because the server never accepted them
	// (its listen queue overflowed, and the SYN cookie that stood for
	// one no longer matched).
	Unaccepted int

	// Refused counts the connections the server ended within a second of
	// their connect, before they could be tested: it limits connections
	// (sshd's MaxStartups, MySQL's max_connections).
	Refused int

	// Resent counts the connections whose SYN had to be sent again: the
	// server's listen queue was full, or a packet was lost. Each halves
	// the pace of the connects that follow.
	Resent int

	// Heard, when not zero, is a silence within which connections were
	// heard from again and again, without data or with data the server
	// sent by itself: keepalive probes of the server's own (Go servers
	// send them after 15s by default, Redis after 300s), or its own
	// messages. Each keeps the path's middleboxes from counting the
	// silence, so no silence from Heard on can be measured: Survived is
	// below it, and with CauseNone the path's own timeout, if it has one,
	// is longer than the server's keepalive and unknown.
	Heard time.Duration

	// Address is the address dialed: the host given, resolved once.
	Address string
}

// Suggest returns the Config [keepalive.Suggest] chooses for a path that
// keeps an idle flow for r.Survived, the longest silence it was seen to
// keep, when a vanished peer must be noticed within detect. It fails when
// Survived is too short for keepalive to keep the flow (under 3s).
//
// With CauseDrop and CauseReset, Survived is the path's measured idle
// timeout, to the resolution of the search. With CauseNone and
// CauseServerClose it is only a lower bound: the Config is right for a
// path that keeps idle flows for Survived, and nothing is known of the
// path beyond it (it may keep them longer, so that the Config probes more
// often than it needs to). Note that with CauseServerClose no Config
// keeps the connection open past Died: the server counts only data.
func (r Result) Suggest(detect time.Duration) (keepalive.Config, error) {
	return keepalive.Suggest(r.Survived, detect)
}

// OptionError reports an invalid field of [Options].
type OptionError struct {
	Field  string // the field's name, such as "Max"
	Value  any    // its value
	Reason string // what is wrong, such as "is out of range 2s..32767s"
}

func (e *OptionError) Error() string {
	return fmt.Sprintf("keepalive: %s %v %s", e.Field, e.Value, e.Reason)
}

// settings validates o and fills in the defaults.
func (o Options) settings() (settings, error) {
	s := settings{
		max:         o.Max,
		flows:       o.Flows,
		interval:    o.Interval,
		count:       o.Count,
		dialTimeout: o.DialTimeout,
		dial:        o.Dial,
		progress:    o.Progress,
	}
	if s.max == 0 {
		s.max = defaultMax
	}
	if s.interval == 0 {
		s.interval = defaultInterval
	}
	if s.count == 0 {
		s.count = defaultCount
	}
	if s.dialTimeout == 0 {
		s.dialTimeout = defaultDialTimeout
	}
	if err := wholeSeconds("Max", s.max, minMax, maxMax); err != nil {
		return settings{}, err
	}
	if err := wholeSeconds("Interval", s.interval, time.Second, maxInterval); err != nil {
		return settings{}, err
	}
	if s.count < 1 || s.count > maxCount {
		return settings{}, &OptionError{"Count", s.count, fmt.Sprintf("is out of range 1..%d", maxCount)}
	}
	if s.dialTimeout < 0 {
		return settings{}, &OptionError{"DialTimeout", s.dialTimeout, "is negative"}
	}
	need := len(ladder(s.max)) + reserves
	switch {
	case s.flows == 0:
		s.flows = need
	case s.flows < minFlows:
		return settings{}, &OptionError{"Flows", s.flows, fmt.Sprintf("is below %d: each pass needs %d reserves and 2 flows to test", minFlows, reserves)}
	case s.flows > need:
		s.flows = need
	}
	return s, nil
}

func wholeSeconds(field string, d, lo, hi time.Duration) error {
	if d%time.Second != 0 {
		return &OptionError{field, d, "is not a whole number of seconds"}
	}
	if d < lo || d > hi {
		return &OptionError{field, d, fmt.Sprintf("is out of range %ds..%ds", lo/time.Second, hi/time.Second)}
	}
	return nil
}

// Plan returns what [Find] with o costs: the most connections it holds
// open at once, and the most passes it takes, each lasting about as long
// as the timeout it finds (see the package documentation). err is the
// error Find returns for o's fields.
func Plan(o Options) (flows, passes int, err error) {
	s, err := o.settings()
	if err != nil {
		return 0, 0, err
	}
	return s.flows, planPasses(s), nil
}

func planPasses(s settings) int {
	return passes(len(ladder(s.max)), s.flows-reserves)
}

// Find measures the idle timeout of the path to address, a host and port
// as for [net.Dial] ("db.internal:5432", "[2001:db8::1]:443"), by sending
// keepalive probes alone: it opens connections that send no data, tests
// each after a different silence, and reports the longest silence after
// which a probe was answered and the shortest after which a flow was lost,
// and how (see the package documentation). The host is resolved once, and
// every connection goes to the same address.
//
// Find returns when the answer is known, when ctx ends, or on an error;
// every connection it opened is then closed and every goroutine it started
// has finished its work. Invalid options fail with an [*OptionError] and a bad address
// with an error naming it, before any connection is made; an address that
// refuses the first connection (an error wrapping [syscall.ECONNREFUSED])
// or does not answer within DialTimeout (a [net.Error] whose Timeout
// reports true) fails at once. On an error, the Result holds what had been learned.
//
// Note that Find is implemented on Linux only. It relies on two things
// Linux does: setting TCP_KEEPIDLE on a silent connection schedules the
// probe from the silence so far, and TCP_INFO tells when a probe was
// answered. Elsewhere it returns an error wrapping [errors.ErrUnsupported].
func Find(ctx context.Context, address string, o Options) (Result, error) {
	start := time.Now()
	s, err := o.settings()
	if err != nil {
		return Result{}, err
	}
	s.address, err = resolve(ctx, address)
	if err != nil {
		return Result{}, err
	}
	return run(ctx, s, start)
}

// resolve checks that address is host:port and returns it with the host
// resolved to one IP address.
func resolve(ctx context.Context, address string) (string, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", fmt.Errorf("keepalive: address %q is not host:port: %w", address, err)
	}
	if port == "" {
		return "", fmt.Errorf("keepalive: address %q has no port", address)
	}
	if host == "" {
		return "", fmt.Errorf("keepalive: address %q has no host", address)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		p, err := net.DefaultResolver.LookupPort(ctx, "tcp", port)
		if err != nil {
			return "", fmt.Errorf("keepalive: address %q: unknown port: %w", address, err)
		}
		port = strconv.Itoa(p)
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return net.JoinHostPort(ip.String(), port), nil
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err == nil && len(ips) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		return "", fmt.Errorf("keepalive: address %q: cannot resolve %s: %w", address, host, err)
	}
	return net.JoinHostPort(ips[0].Unmap().String(), port), nil
}
