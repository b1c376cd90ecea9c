package audit

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"github.com/keepalive-go/keepalive"
)

// Conn is one TCP connection: its addresses, the process that holds it,
// its keepalive state and the verdicts on it.
type Conn struct {
	// Local and Remote are the connection's addresses. IPv4-mapped IPv6
	// addresses are reported as IPv4.
	Local, Remote netip.AddrPort

	// State is the connection's TCP state.
	State State

	// Inode identifies the socket on the host: sock_diag's idiag_inode,
	// the N of socket:[N] in /proc/PID/fd.
	Inode uint32

	// Netns is the inode number of the connection's network namespace,
	// the N of net:[N] in /proc/PID/ns/net.
	Netns uint64

	// UID is the user that owns the socket, as sock_diag reports it.
	UID uint32

	// PID is the process that holds the socket. Zero means none that the
	// caller may inspect: the owner's descriptors could not be listed
	// (see [Report.Unreadable]), or no process holds it any more. A socket
	// that several processes share (inherited across fork) is reported
	// once, with the lowest pid.
	PID int

	// Command is the name of process PID (/proc/PID/comm); empty when PID
	// is zero.
	Command string

	// FD is the descriptor number of the socket in process PID;
	// meaningless when PID is zero.
	FD int

	// Timer is the timer sock_diag reports pending on the socket, all the
	// kernel shows of keepalive without reading the socket itself.
	Timer Timer

	// Source says where Enabled and Config come from.
	Source Source

	// Method says how the values were read when Source is SourceSocket:
	// MethodBPF (the BPF iterator) or MethodPidfd (a duplicate made with
	// pidfd_getfd). MethodAuto, the zero Method, when they were not.
	Method Method

	// Cgroup is the id of the cgroup v2 the socket belongs to (that of the
	// process that made it, when it made it), as read by the BPF
	// iterator; zero when the values were not read through it.
	Cgroup uint64

	// SetBy is the policy of keepalive enforce that set the connection's
	// options, as the record it left on the socket says; nil when none
	// did, or when the record could not be read (the values were not read
	// through the BPF iterator, and no policy's map could be opened).
	SetBy *SetBy

	// Enabled reports whether keepalive (SO_KEEPALIVE) is on: read from the
	// socket when Source is SourceSocket, inferred from Timer when it is
	// SourceKernel; false and meaningless when it is SourceNone.
	Enabled bool

	// Config holds the values in force when Source is SourceSocket: Idle,
	// Interval and Count as the kernel applies them (the system default
	// where the socket sets none), UserTimeout zero when there is none.
	// The values are reported even when Enabled is false. Zero when Source
	// is not SourceSocket.
	Config keepalive.Config

	// DetectionTime is the worst-case time the connection takes to notice
	// a vanished peer while idle, with the values in force
	// ([keepalive.Config.DetectionTime]). Zero when it never does
	// (keepalive off) or when Source is not SourceSocket.
	DetectionTime time.Duration

	// IdleTimeoutVerdict answers Criteria.IdleTimeout: OK, AtRisk or
	// Unknown. NotChecked when the question was not asked.
	IdleTimeoutVerdict Verdict

	// DetectVerdict answers Criteria.Detect: OK, SlowDetect or Unknown.
	// NotChecked when the question was not asked.
	DetectVerdict Verdict

	// Verdict is the overall verdict, never NotChecked: Off when keepalive
	// is off, else AtRisk or SlowDetect when either question says so, else
	// Unknown when the values are not known well enough to answer, else
	// OK.
	Verdict Verdict

	// Err is why the values were not read from the socket although its
	// owner is known: no permission, the process or descriptor gone. Nil
	// when Source is SourceSocket, when the owner is unknown, or when the
	// audit was asked not to read values.
	Err error
}

// SetBy is the policy (keepalive enforce, package enforce) whose programs
// set a connection's options, as the record they keep on the socket says.
type SetBy struct {
	// Cgroup is the path of the policy's cgroup as enforce was given it;
	// for one no policy is pinned on any more, its path now, found by its
	// id (open_by_handle_at), or empty when it is gone.
	Cgroup string

	// CgroupID is the id of the policy's cgroup.
	CgroupID uint64

	// PolicyID tells the policy from others put on the same cgroup before
	// or after it ([enforce.Policy.ID]).
	PolicyID uint64

	// How is how the policy reached the connection.
	How How

	// Set is the options it set, which the kernel accepted; Left those it
	// left to the process's own values (a policy where the program wins).
	// A process or apply may have set them again since: the connection's
	// values are those read from the socket.
	Set, Left Fields

	// InForce reports whether that policy is still the one in force on
	// its cgroup. A policy that has ended (removed, replaced by another,
	// or detached when its cgroup was removed) left the values it set, as
	// a socket keeps any option until it is set again; the record says so
	// as long as another policy keeps the records' map. Once the last
	// policy is removed the map goes, and no connection has a record.
	InForce bool
}

// How is how a policy reached a connection.
type How uint8

const (
	// Dialled is a connection its sock_ops program set as it was
	// established by connect.
	Dialled How = iota + 1
	// Accepted is one its sock_ops program set as a listener established
	// it.
	Accepted
	// Existing is one its iterator set, established before the policy.
	Existing
)

var howNames = [...]string{Dialled: "dialled", Accepted: "accepted", Existing: "existing"}

// String returns "dialled", "accepted" or "existing".
func (h How) String() string {
	if int(h) < len(howNames) && howNames[h] != "" {
		return howNames[h]
	}
	return fmt.Sprintf("How(%d)", h)
}

// MarshalText implements [encoding.TextMarshaler] with String.
func (h How) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnansweredProbes returns how many keepalive probes are out unanswered
// on the connection, as sock_diag's keepalive timer shows it: more than
// zero means the peer has not answered for at least an interval, and the
// connection is dropped when the count reaches the socket's Count. Zero
// when no keepalive timer is pending.
func (c Conn) UnansweredProbes() int {
	if c.Timer.Kind != TimerKeepalive {
		return 0
	}
	return c.Timer.Count
}

// Source says where a connection's keepalive state comes from.
type Source uint8

const (
	// SourceNone means nothing is known of the connection's keepalive
	// state but its Timer.
	SourceNone Source = iota

	// SourceKernel means keepalive's state was inferred from what
	// sock_diag reports, without reading the socket: an established
	// connection with a keepalive timer pending has keepalive on, one with
	// no timer at all has it off. The values are not known.
	SourceKernel

	// SourceSocket means the state and values were read from the socket
	// itself with getsockopt: by a BPF iterator (bpf_getsockopt) or on a
	// duplicate made with pidfd_getfd, as Conn.Method says.
	SourceSocket
)

var sourceNames = [...]string{SourceNone: "none", SourceKernel: "kernel", SourceSocket: "socket"}

// String returns "none", "kernel" or "socket".
func (s Source) String() string {
	if int(s) < len(sourceNames) {
		return sourceNames[s]
	}
	return fmt.Sprintf("Source(%d)", s)
}

// MarshalText implements [encoding.TextMarshaler] with String.
func (s Source) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Verdict is an answer about a connection's keepalive.
type Verdict uint8

const (
	// NotChecked means the question was not asked. An overall verdict is
	// never NotChecked.
	NotChecked Verdict = iota

	// OK means the connection meets every criterion asked; with none asked,
	// that keepalive is on.
	OK

	// AtRisk means a middlebox with the given idle timeout forgets the
	// flow if it goes idle: its first probe would come too late, or
	// keepalive is off.
	AtRisk

	// SlowDetect means a vanished peer is noticed later than wanted, or
	// never (keepalive off).
	SlowDetect

	// Off means keepalive is off: the flow is forgotten by any middlebox
	// with an idle timeout, and a vanished peer is never noticed while the
	// connection is idle. Only an overall verdict is Off.
	Off

	// Unknown means the values in force could not be read (see
	// [Conn.Source]) and what the kernel reports cannot decide.
	Unknown
)

var verdictNames = [...]string{NotChecked: "", OK: "ok", AtRisk: "at-risk", SlowDetect: "slow-detect", Off: "off", Unknown: "unknown"}

// String returns "ok", "at-risk", "slow-detect", "off", "unknown", or ""
// for NotChecked.
func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return fmt.Sprintf("Verdict(%d)", v)
}

// MarshalText implements [encoding.TextMarshaler] with String.
func (v Verdict) MarshalText() ([]byte, error) { return []byte(v.String()), nil }

// State is a TCP state, numbered as the kernel numbers them
// (include/net/tcp_states.h). The zero State is not a TCP state.
type State uint8

// The TCP states a [Conn] can be in.
const (
	Established State = 1
	SynSent     State = 2
	FinWait1    State = 4
	FinWait2    State = 5
	CloseWait   State = 8
	LastAck     State = 9
	Closing     State = 11
)

var stateNames = [...]string{
	1: "established", 2: "syn-sent", 3: "syn-recv", 4: "fin-wait-1", 5: "fin-wait-2", 6: "time-wait",
	7: "close", 8: "close-wait", 9: "last-ack", 10: "listen", 11: "closing", 12: "new-syn-recv",
}

// String returns the state as ss names it, in lower case: "established",
// "close-wait", ...
func (s State) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// MarshalText implements [encoding.TextMarshaler] with String.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// connStates is the bit mask of the states Audit reports, for sock_diag's
// idiag_states.
const connStates = 1<<Established | 1<<SynSent | 1<<FinWait1 | 1<<FinWait2 | 1<<CloseWait | 1<<LastAck | 1<<Closing

// Timer is the timer sock_diag reports pending on a socket (idiag_timer,
// idiag_expires, idiag_retrans), as ss -o shows it. The zero Timer is no
// timer pending.
type Timer struct {
	// Kind is the timer pending. TimerNone means none.
	Kind TimerKind

	// Expires is how long until the timer fires; zero when Kind is
	// TimerNone or the timer is overdue.
	Expires time.Duration

	// Count is, for a keepalive or zero-window probe timer, how many
	// probes have gone unanswered; for a retransmission timer, how many
	// retransmissions have been sent. Zero otherwise.
	Count int
}

// TimerKind is the kind of timer sock_diag reports, numbered as in
// idiag_timer.
type TimerKind uint8

const (
	// TimerNone means no timer is pending: on an established connection,
	// keepalive is off and no data is unacknowledged.
	TimerNone TimerKind = iota
	// TimerRetransmit is the retransmission timer: data is
	// unacknowledged. While it is pending the keepalive timer is not
	// shown.
	TimerRetransmit
	// TimerKeepalive is the keepalive timer: keepalive is on.
	TimerKeepalive
	// TimerTimeWait is the TIME-WAIT timer.
	TimerTimeWait
	// TimerZeroWindowProbe is the zero-window probe timer: the peer
	// advertises no room.
	TimerZeroWindowProbe
)

var timerNames = [...]string{TimerNone: "", TimerRetransmit: "on", TimerKeepalive: "keepalive", TimerTimeWait: "timewait", TimerZeroWindowProbe: "persist"}

// String returns the timer's name as ss -o writes it: "keepalive", "on"
// (retransmission), "timewait", "persist" (zero-window probe), or "" for
// TimerNone.
func (k TimerKind) String() string {
	if int(k) < len(timerNames) {
		return timerNames[k]
	}
	return fmt.Sprintf("TimerKind(%d)", k)
}

// MarshalText implements [encoding.TextMarshaler] with String.
func (k TimerKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// MarshalJSON writes c as one JSON object: pid, command, fd, uid, inode,
// netns, local, remote, state, source, method, enabled, idle, interval,
// count, user_timeout, detection_time, timer, cgroup_id, set_by, the
// verdicts and error. Durations are in Go's notation
// (time.Duration.String). Fields that are not known are left out: fd and
// command without an owner, enabled when Source is SourceNone, the values,
// method and detection_time unless Source is SourceSocket, timer when none
// is pending, cgroup_id when not read, set_by when no policy set the
// connection, a verdict that was not checked. set_by holds cgroup (left
// out when not known), cgroup_id, policy_id, how, set and left (option
// names, comma-separated, "none" for none) and in_force.
func (c Conn) MarshalJSON() ([]byte, error) {
	type timer struct {
		Kind    TimerKind `json:"kind"`
		Expires string    `json:"expires"`
		Count   int       `json:"count"`
	}
	type setBy struct {
		Cgroup   string `json:"cgroup,omitempty"`
		CgroupID uint64 `json:"cgroup_id"`
		PolicyID uint64 `json:"policy_id"`
		How      How    `json:"how"`
		Set      string `json:"set"`
		Left     string `json:"left"`
		InForce  bool   `json:"in_force"`
	}
	j := struct {
		PID                int     `json:"pid"`
		Command            string  `json:"command,omitempty"`
		FD                 *int    `json:"fd,omitempty"`
		UID                uint32  `json:"uid"`
		Inode              uint32  `json:"inode"`
		Netns              uint64  `json:"netns"`
		Local              string  `json:"local"`
		Remote             string  `json:"remote"`
		State              State   `json:"state"`
		Source             Source  `json:"source"`
		Method             *Method `json:"method,omitempty"`
		Enabled            *bool   `json:"enabled,omitempty"`
		Idle               string  `json:"idle,omitempty"`
		Interval           string  `json:"interval,omitempty"`
		Count              *int    `json:"count,omitempty"`
		UserTimeout        string  `json:"user_timeout,omitempty"`
		DetectionTime      string  `json:"detection_time,omitempty"`
		Timer              *timer  `json:"timer,omitempty"`
		CgroupID           uint64  `json:"cgroup_id,omitempty"`
		SetBy              *setBy  `json:"set_by,omitempty"`
		IdleTimeoutVerdict Verdict `json:"idle_timeout_verdict,omitempty"`
		DetectVerdict      Verdict `json:"detect_verdict,omitempty"`
		Verdict            Verdict `json:"verdict"`
		Error              string  `json:"error,omitempty"`
	}{
		PID: c.PID, Command: c.Command, UID: c.UID, Inode: c.Inode, Netns: c.Netns,
		Local: c.Local.String(), Remote: c.Remote.String(), State: c.State, Source: c.Source, CgroupID: c.Cgroup,
		IdleTimeoutVerdict: c.IdleTimeoutVerdict, DetectVerdict: c.DetectVerdict, Verdict: c.Verdict,
	}
	if c.PID != 0 {
		j.FD = &c.FD
	}
	if c.Source != SourceNone {
		j.Enabled = &c.Enabled
	}
	if b := c.SetBy; b != nil {
		j.SetBy = &setBy{b.Cgroup, b.CgroupID, b.PolicyID, b.How, b.Set.String(), b.Left.String(), b.InForce}
	}
	if c.Source == SourceSocket {
		j.Method = &c.Method
		j.Idle, j.Interval, j.UserTimeout = c.Config.Idle.String(), c.Config.Interval.String(), c.Config.UserTimeout.String()
		j.Count = &c.Config.Count
		if c.Enabled {
			j.DetectionTime = c.DetectionTime.String()
		}
	}
	if c.Timer.Kind != TimerNone {
		j.Timer = &timer{c.Timer.Kind, c.Timer.Expires.String(), c.Timer.Count}
	}
	if c.Err != nil {
		j.Error = c.Err.Error()
	}
	return json.Marshal(j)
}
