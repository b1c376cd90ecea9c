// Package idletimeout measures the idle timeout of the path to a TCP
// server: after how long of silence a NAT, firewall or load balancer
// between here and the server forgets a flow. It sends keepalive probes
// and nothing else: no byte of application data, so any TCP server will
// do, and needs nothing on the other end. It tells the path from the
// server: a server that ends idle connections itself, or never accepted
// some, or sends keepalive probes of its own, is reported as such, not as
// the path.
//
// [Find] returns the longest silence a flow was seen to survive and the
// shortest that lost one, and how the flow was lost: a silent drop (its
// probes went unanswered), a reset, or the server ending idle connections
// itself. [Result.Suggest] turns the answer into a [keepalive.Config].
//
//	r, err := idletimeout.Find(ctx, "kafka.internal:9092", idletimeout.Options{})
//	// behind an AWS NLB (350s), Kafka closing idle connections after 10m:
//	// r.Survived 5m45s, r.Died 5m51s, r.Cause CauseDrop
//
// A server may end connections before the path forgets them. PostgreSQL
// ends one that has not logged in after authentication_timeout (60s), so
// through the same NLB:
//
//	r, err := idletimeout.Find(ctx, "db.internal:5432", idletimeout.Options{})
//	// r.Cause CauseServerClose, r.End EndFIN, r.Died 1m0.2s, r.Survived 1m0s:
//	// the path keeps flows a minute at least; beyond that, unknown
//
// and [Options.Dial] can log in first, so that the server holds idle
// sessions, and the path's own timeout is measured (the keepalive
// command does this for postgres:// and mysql:// URLs).
//
// # How it works
//
// Find opens connections, the flows, that stay silent. Each has keepalive
// on with an Idle too long to ever fire by itself (parked). To test whether
// the path keeps a flow silent for x, the search sets that flow's Idle to
// x just before the flow has been silent that long: Linux then schedules
// the probe from the silence so far, so it leaves after x of silence, to
// within a jiffy or two (a timer set hours ahead may fire up to an eighth
// of its length late, so none is). If the path still knows the flow, the
// server's kernel answers the probe, which TCP_INFO shows at once (no probe
// outstanding, an ACK newer than the test): the flow survived x, and stays
// open, parked. If not, its Count probes, Interval apart, go unanswered and
// the kernel declares it dead with ETIMEDOUT; or a middlebox or the server
// answers with a reset (ECONNRESET).
//
// The silences tested form a ladder: 1s, then each point plus
// max(1s, ⌊x/50⌋ whole seconds), up to Max, and Max itself: 329 points for
// two hours, 165 for five minutes. All the flows of a pass connect at its
// start, in order of their silence, and each is tested when it has been
// silent for its point. A flow tested at x fires at x after it connected,
// so the points are tested in order, as the silence grows.
//
// The flows connect one every 5ms at most (16 at a time on a slow path).
// A server takes connections from its kernel's accept queue one at a time,
// and the queue holds only as many as its listen backlog: 5 for socat. A
// burst of connections overflows it, and the kernel then drops SYNs, or
// answers with SYN cookies that it forgets when the queue is still full:
// such a connection is open here and unknown to the server, which resets
// it at its first probe. At 200 connections a second a server that forks
// for each keeps up. A connect whose SYN had to be sent again (the queue
// was full, or a packet was lost) halves the pace of the rest, down to one
// every 80ms; [Result.Resent] counts them.
//
// A flow can die for a reason other than the path forgetting it: its
// probes or their answers lost, or the server not knowing it. So a death
// is believed only when it is repeated: two more flows are fired so that
// they probe after the same silence x, and the death stands only if both
// die too (for a reset, one more flow is enough: lost packets make no
// reset). A survival needs no re-test: lost packets cannot make a
// forgotten flow answer. The re-tests are done by the reserves, flows
// connected after the others and parked, or by flows whose probe was
// answered earlier, whichever have been silent longest but for less than
// x. Each pass has two reserves, dialed Count·Interval + 0.5s after its
// last test flow connected: when the death of a flow tested at x is known,
// Count·Interval after its probe, a reserve has been silent for less than
// x, and probes after x of silence at most 0.5s plus the spread of the
// connects later. A reset answering a probe that a re-test or a longer
// silence then shows the path keeps was a connection the server had never
// accepted: [Result.Unaccepted] counts them. The pass ends once the
// shortest believed death is known and every shorter silence has been
// decided.
//
// # The server's own ends
//
// A connection that ends without having been probed, with a FIN or a
// reset, after at least 1s of silence, shows that the server (or the path)
// ends idle connections by itself. Two such ends within max(1s, 2%) of
// each other, or one when no other unprobed flow could confirm it, make
// the finding. Its silence, Died, is measured from the connection's last
// data to its end, and the search is over: the end crossed the path after
// that silence, so the path keeps flows at least that long, and Survived
// is Died in whole seconds. What the path does beyond it cannot be seen
// through connections the server ends; a server's timeout for connections
// that do not log in is usually far shorter than its timeout for idle
// sessions, which [Options.Dial] can reach by logging in.
//
// A server counts only data as activity, a middlebox counts every
// packet, keepalive probes included: that tells which one resets idle
// flows by itself (a FIN comes from the server). A flow whose probe was
// answered, a witness, is reset the same silence after its last data if
// the server resets the flows ([CauseServerClose], [EndReset]), the same
// silence after the answer if a middlebox does ([CauseReset], EndReset).
// The search waits for the witness whose gap between the two is at least
// twice max(1s, 2%) of the silence, or the widest, until it is reset or
// has outlived the server's reckoning by half its gap.
//
// A connection the server ends within a second of its connect was
// refused: the server limits connections (sshd's MaxStartups, MySQL's
// max_connections). Its test is given to another flow, [Result.Refused]
// counts them, and from then on the search opens no more connections than
// were open then, two of them kept from every test so that the server's
// own end, if it has one, is still measured; if every connection is
// refused, Find fails. Data the server sends within a second of the connect, a greeting
// (MySQL, MariaDB, SSH), starts the silence afresh, and [Result.Spoke] says
// that the server ending connections had sent one.
//
// A server may probe idle connections itself: Go servers do after 15s by
// default, Redis after 300s. Its probes keep the path's middleboxes from
// ever seeing a longer silence, so a search that did not notice them would
// report that the path keeps flows for Max. Before it fires a flow, the
// search asks TCP_INFO whether segments arrived since the flow fell
// silent, and data the server sends after a second of silence counts the
// same. Such a flow tests nothing, its test is given to another flow, and
// it is asked again once as much silence has passed: a server's probes
// come again and again, while a segment of the handshake sent again (the
// last ACK of the handshake lost) comes once. When two flows have been
// heard from twice running within x, no silence from x on can be
// measured, and [Result.Heard] says from where. A handshake is sent again
// only in the first minute after the connect (Linux gives up at 63s), so a
// flow that tests a longer silence is asked once its first minute is
// over: heard from by then, it tests nothing (the middleboxes may count its
// silence from a later segment than the kernel does); heard from after,
// it was the server, and two such flows are enough (Redis, whose probes
// come after 300s, is known by 309s).
//
// A search whose connections keep being lost to something other than the
// path (the server ending or refusing them, or heard from) may run out of
// passes with silences still untested between its bounds: Find then fails
// with an error that names them, and the Result holds what was learned.
//
// # Resolution
//
// Let T be the path's timeout: a flow silent for less than T is kept, one
// silent for T or more is lost. For T in (x_i, x_{i+1}], between two
// consecutive ladder points, the flow tested at x_i and every one below
// survive, the flow at x_{i+1} and every one above die, so Survived = x_i
// and Died = x_{i+1}, and
//
//	Died − Survived = step(x_i) = max(1s, ⌊x_i/50⌋s) ≤ max(1s, x_i/50) < max(1s, T/50)
//
// since x_i < T: within 1s for timeouts up to 50s, within 2% of the
// timeout beyond, up to Max. (A timeout of 1s or less gives Survived 0,
// Died 1s; one past Max gives CauseNone and Survived Max.) The search
// looks no further than it must: it never waits for a point above Died.
//
// With a server that ends idle connections after S, Died = S is measured,
// to the millisecond, and Survived = ⌊S⌋.
//
// # Time
//
// Let D be the time from the start of a pass until its last test flow is
// connected (one every 5ms: 1.7s for 331 flows), d one connect, C the
// Count, V the Interval and σ the lateness of the kernel's interval timer
// (a few ms; the timer wheel rounds a 1s timer up to 32ms at HZ 250). For
// a path that silently drops flows after T, in one pass:
//
//   - the flow at Died = x_{i+1} connected by D and probes after x_{i+1} of
//     silence; its death is known C·(V+σ) later;
//   - the two reserves that re-test it connected by D + C·V + 0.5s + d, so
//     they probe after x_{i+1} of silence by D + C·V + 0.5s + d + x_{i+1} +
//     σ, and their deaths are known C·(V+σ) after that;
//   - the flow at Survived = x_i was answered a round trip after its
//     probe, a second or more earlier.
//
// So the answer comes at most
//
//	x_{i+1} + D + d + 2·C·V + 0.5s + (C+1)·σ  <  T + max(1s, T/50) + 2·C·V + D + d + 0.5s + (C+1)·σ
//
// after the start: with the defaults (C = 2, V = 1s), T + max(1s, T/50) +
// 4.5s + D + d + 3σ. Measured in the tests' lab, for firewalls forgetting
// after 3 and 17s (32 and 42 flows) and 8s (331 flows, D = 1.7s): the
// answer 4.7, 4.8 and 6.1s after the first tested silence past the
// timeout. A reset answering a probe is known at once and re-tested by a
// flow connected by D + C·V + 0.5s, or by one answered earlier, so the
// answer comes by x_{i+1} + C·V + D + d + 0.5s plus a round trip (7.0s for
// a 6s timeout). A server that ends idle connections after S is known by
// S + D plus a round trip, once a second connection confirms it (7.05s for
// 7s); when it resets them, a flow answered before confirms that it is the
// server, at once. A path that keeps flows for Max is known by Max + D plus
// a round trip (4.02s for Max 4s); the search never waits for Max when the
// timeout is shorter.
//
// The 2% is the price of a bounded number of flows, and no search can
// avoid it. To know by T + k·V that a silence of T loses a flow, a flow
// must be probed after a silence between T and T + k·V; a connection can
// be probed after a long silence only once (an answered probe restarts
// its silence, a lost flow is gone), so answering within k·V for every T
// up to Max takes about Max/(k·V) connections: 2,400 for two hours and
// k = 3.
//
// # Lost packets
//
// With Count 2, one lost probe or answer does not lose a flow: the next
// probe, an Interval later, is answered. It can only where the next probe
// comes after the timeout: the flow tested just below T, if its first
// probe is lost before the middlebox. Every death is tested again on two
// more flows, so a wrong answer needs both to lose their packets in the
// same way: for a path that loses a share p of its round trips, about p³ a
// search (0.02% at 6%, a path losing 3% of its packets each way), and it is
// then wrong by one step, x_i reported as Died. Far below the
// timeout a flow dies only if Count probes or their answers are lost, and
// a re-test or a flow kept for a longer silence overturns it. Result.Retests
// and Result.Spurious count what happened. A lost last ACK of a handshake
// makes the server send its SYN-ACK again a second later, which reaches the
// flow as a segment without data: the flow is heard from once, its test is
// given to another flow, and it sets no ceiling, since it is not heard from
// again.
//
// # Cost
//
// One pass holds up to Flows connections open at once from this host to
// the one address: the ladder for Max plus the two reserves, 331 for two
// hours. On the way, each is an entry in every NAT or firewall; on the
// server, an idle connection (a process, on servers that fork one per
// connection); for a test flow, Count probes at most of one empty segment
// each, their answers, and the handshake and FIN. A flow stays open until
// its pass ends, so that it can re-test a point or tell whose clock ends
// connections. A flow the path has forgotten cannot carry its FIN: it
// stays open on the server until the server's own keepalive or timeout
// removes it.
//
// With fewer Flows than one pass needs, the resolution is the same and the
// time is longer. A pass with n = Flows − 2 flows for tests tests every
// g-th point of the ladder counted down from Max, g = ⌈m/n⌉ for m points,
// so that the timeout is known to lie in a gap of at most g − 1 untested
// points, which the next pass tests. Each pass lasts at most its first
// tested silence past the timeout, plus the overhead above. Measured over
// timeouts from 1 minute to 2 hours, with Max 2h:
//
//	Flows   passes   answer at most
//	331     1        T + max(1s, 2%) + 6.2s
//	100     2        2.2 × T
//	50      2        2.3 × T
//	20      2        2.5 × T
//	8       4        6.1 × T
//	4       8        36 × T
//
// (and for timeouts under a minute, at most 2m12s with 20 to 100 flows). A
// pass may also be added when a flow was lost to something other than the
// path, such as a server that resets one connection, to test its silence
// again; at most two.
package idletimeout
