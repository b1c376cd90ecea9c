// Package metrics turns an audit of a host's TCP connections into
// Prometheus metrics: a [Collector] for an exporter, which audits the host
// at each scrape, and [WriteTextfile] for node_exporter's textfile
// collector, which writes the metrics of one audit to a file.
//
// Both read the host through package audit, the one way the keepalive
// command reads it, and write the same metrics.
//
// # Metrics
//
// By default, aggregates whose number stays small on any host:
//
//	keepalive_connections{command,verdict}  gauge: TCP connections by the command of the
//	                                        process that holds them and their verdict: ok,
//	                                        at-risk, slow-detect, off or unknown
//	keepalive_probing_connections{command}  gauge: of those, the connections whose keepalive
//	                                        probes are out unanswered now: a peer that may
//	                                        be gone ([audit.Conn.UnansweredProbes])
//	keepalive_read_connections{method}      gauge: connections whose values were read, by
//	                                        method: bpf or pidfd
//	keepalive_scrape_duration_seconds       gauge: how long the audit took
//	keepalive_scrape_errors_total           counter: audits that failed
//
// keepalive_connections has a series for each of the five verdicts of each
// command that holds a connection, zero included, so that a count that
// falls to zero reads 0 rather than vanishing; keepalive_probing_connections
// one for each such command, and keepalive_read_connections one for each
// method, zeros included. The command label is empty for connections
// whose owner the audit could not see (no permission to list the
// process's descriptors); the verdicts are those of [audit.Conn.Verdict],
// against the [audit.Criteria] given.
//
// For each policy of keepalive enforce in force ([audit.Report.Policies]),
// labelled with its cgroup's path:
//
//	keepalive_policy_set_connections_total{cgroup,how}     counter: connections it set,
//	                                                        how: dialled, accepted, existing
//	keepalive_policy_kept_setsockopt_total{cgroup}         counter: setsockopt calls of its
//	                                                        processes it kept from changing
//	                                                        its values (policy wins)
//	keepalive_policy_yielded_connections_total{cgroup}     counter: connections on which it
//	                                                        left options to the program's own
//	                                                        values (program wins)
//	keepalive_policy_failed_options_total{cgroup}          counter: options the kernel refused
//	keepalive_policy_carrying_connections{cgroup}          gauge: audited connections that
//	                                                        carry it now
//	keepalive_policy_cgroup_connections{cgroup}            gauge: audited connections of its
//	                                                        cgroup and those below it; only
//	                                                        where the BPF iterator read the
//	                                                        sockets' cgroups
//	keepalive_policy_start_time_seconds{cgroup}            gauge: when it was put in force,
//	                                                        in seconds since the epoch
//
// The counters start again at zero when a policy is replaced (a new
// start time); Prometheus' rate and increase take that as a reset.
//
// With [Options.PerConnection], one series per connection and metric as
// well, labelled pid, command, local and remote (pid "0" and command ""
// when the owner is unknown):
//
//	keepalive_enabled               1 when keepalive (SO_KEEPALIVE) is on, else 0
//	keepalive_idle_seconds          idle time before the first probe (TCP_KEEPIDLE)
//	keepalive_interval_seconds      time between probes (TCP_KEEPINTVL)
//	keepalive_probes                unanswered probes before the connection is dropped (TCP_KEEPCNT)
//	keepalive_user_timeout_seconds  longest time sent data may stay unacknowledged
//	                                (TCP_USER_TIMEOUT); 0 for none
//
// keepalive_enabled is there whenever the audit knows whether keepalive is
// on ([audit.SourceKernel] or [audit.SourceSocket]); the four values only
// when they were read from the socket ([audit.SourceSocket]).
//
// # The scrape's own connection
//
// A scrape arrives on a TCP connection that exists only for it; on a host
// where the scraper runs too, both its ends would be counted. An exporter
// answers each scrape with [Collector.Scrape], which leaves out both ends
// of that connection, matched exactly by their addresses, and nothing
// else.
//
// # Cost in series
//
// The aggregates cost 6 series per distinct command that holds a TCP
// connection, plus 4, and 9 per policy in force. Per-connection metrics cost up to 5 series per
// connection: 500,000 on a host with 100,000 connections. Every new
// connection (a new local port) is a new set of series, so a host whose
// clients reconnect often makes series churn, which Prometheus pays for in
// memory and index size long after the connections are gone. Use
// PerConnection on hosts with few, long-lived connections (database
// replicas, message brokers), or with a filter; the aggregates are meant
// for every host.
package metrics

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepalive-go/keepalive/ops/audit"
)

// Options configures a [Collector].
type Options struct {
	// Audit is what each collection audits and against which criteria.
	// Its Progress is not called.
	Audit audit.Options

	// PerConnection adds one series per connection and metric (see the
	// package documentation for what that costs). False exports the
	// aggregates only.
	PerConnection bool

	// Timeout bounds each collection's audit: one that takes longer is
	// abandoned and counted as an error. Zero means no limit.
	Timeout time.Duration

	// ErrorLog, if not nil, receives each failed audit's error. Nil
	// discards them; they are counted all the same.
	ErrorLog *slog.Logger
}

// The metrics' descriptions.
var (
	connectionsDesc = prometheus.NewDesc("keepalive_connections",
		"TCP connections by the command of the process that holds them (empty when not known) and their keepalive verdict: ok, at-risk (a middlebox with the path's idle timeout forgets the flow), slow-detect (a vanished peer is noticed too late), off (keepalive off) or unknown (the values could not be read).",
		[]string{"command", "verdict"}, nil)
	probingDesc = prometheus.NewDesc("keepalive_probing_connections",
		"TCP connections, by the command of the process that holds them (empty when not known), whose keepalive probes are out unanswered now: the peer has not answered for at least an interval, and the connection is dropped when the count reaches its TCP_KEEPCNT.",
		[]string{"command"}, nil)
	readDesc = prometheus.NewDesc("keepalive_read_connections",
		"TCP connections whose keepalive values were read from the socket, by method: bpf (a BPF TCP iterator, no ptrace) or pidfd (pidfd_getfd, ptrace).",
		[]string{"method"}, nil)
	durationDesc = prometheus.NewDesc("keepalive_scrape_duration_seconds",
		"How long the audit of the host's TCP connections took.", nil, nil)
	errorsDesc = prometheus.NewDesc("keepalive_scrape_errors_total",
		"Audits of the host's TCP connections that failed.", nil, nil)

	policySetDesc = prometheus.NewDesc("keepalive_policy_set_connections_total",
		"Connections the keepalive policy on the cgroup has set since it was put in force, by how it reached them: dialled, accepted, existing (established before it).",
		[]string{"cgroup", "how"}, nil)
	policyKeptDesc = prometheus.NewDesc("keepalive_policy_kept_setsockopt_total",
		"setsockopt calls of the cgroup's processes that the keepalive policy kept from changing an option it sets (policy wins).",
		[]string{"cgroup"}, nil)
	policyYieldedDesc = prometheus.NewDesc("keepalive_policy_yielded_connections_total",
		"Connections on which the keepalive policy on the cgroup left options to the program's own values (program wins).",
		[]string{"cgroup"}, nil)
	policyFailedDesc = prometheus.NewDesc("keepalive_policy_failed_options_total",
		"Options the kernel refused to set for the keepalive policy on the cgroup.",
		[]string{"cgroup"}, nil)
	policyCarryingDesc = prometheus.NewDesc("keepalive_policy_carrying_connections",
		"Audited TCP connections that carry the keepalive policy on the cgroup now: it set them and is still in force.",
		[]string{"cgroup"}, nil)
	policyCgroupDesc = prometheus.NewDesc("keepalive_policy_cgroup_connections",
		"Audited TCP connections whose socket belongs to the policy's cgroup or one below it.",
		[]string{"cgroup"}, nil)
	policyStartDesc = prometheus.NewDesc("keepalive_policy_start_time_seconds",
		"When the keepalive policy on the cgroup was put in force, in seconds since the epoch.",
		[]string{"cgroup"}, nil)

	connLabels  = []string{"pid", "command", "local", "remote"}
	enabledDesc = prometheus.NewDesc("keepalive_enabled",
		"Whether keepalive (SO_KEEPALIVE) is on for the connection: 1 on, 0 off.", connLabels, nil)
	idleDesc = prometheus.NewDesc("keepalive_idle_seconds",
		"Idle time before the first keepalive probe (TCP_KEEPIDLE) in force on the connection.", connLabels, nil)
	intervalDesc = prometheus.NewDesc("keepalive_interval_seconds",
		"Time between keepalive probes (TCP_KEEPINTVL) in force on the connection.", connLabels, nil)
	probesDesc = prometheus.NewDesc("keepalive_probes",
		"Unanswered keepalive probes before the connection is dropped (TCP_KEEPCNT) in force on the connection.", connLabels, nil)
	userTimeoutDesc = prometheus.NewDesc("keepalive_user_timeout_seconds",
		"Longest time sent data may stay unacknowledged (TCP_USER_TIMEOUT) on the connection; 0 for none.", connLabels, nil)
)

// verdicts are the overall verdicts keepalive_connections counts, in the
// order it lists them.
var verdicts = [...]audit.Verdict{audit.OK, audit.AtRisk, audit.SlowDetect, audit.Off, audit.Unknown}

// Collector is a [prometheus.Collector] that audits the host at each
// collection, as node_exporter's collectors read the host at each scrape:
// it keeps no state between collections but the count of errors, and
// starts no goroutines. Collections may run concurrently.
type Collector struct {
	o      Options
	errors atomic.Uint64
}

// NewCollector returns a Collector with the options o.
func NewCollector(o Options) *Collector {
	o.Audit.Progress = nil
	return &Collector{o: o}
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		connectionsDesc, probingDesc, readDesc, durationDesc, errorsDesc,
		policySetDesc, policyKeptDesc, policyYieldedDesc, policyFailedDesc, policyCarryingDesc, policyCgroupDesc, policyStartDesc,
	} {
		ch <- d
	}
	if c.o.PerConnection {
		for _, d := range []*prometheus.Desc{enabledDesc, idleDesc, intervalDesc, probesDesc, userTimeoutDesc} {
			ch <- d
		}
	}
}

// Collect implements [prometheus.Collector]: it audits the host and sends
// the metrics. When the audit fails, it counts and logs the error, and
// sends only the duration and the count of errors.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.collect(ch, nil)
}

// Scrape returns the Collector for one collection made to answer a scrape
// that arrived on the TCP connection from remote to local, which the
// exporter holds in its own network namespace: it sends what c sends,
// without that connection and its other end, the scraper's, which exist
// only for the scrape. They are recognised by their addresses, which no
// other connection in the namespace has, and by the namespace, so that a
// connection elsewhere with the same addresses is never hidden. Every
// other connection to the exporter, a scraper's idle one included, is
// counted.
func (c *Collector) Scrape(local, remote netip.AddrPort) prometheus.Collector {
	return scrapeCollector{c, local, remote}
}

// scrapeCollector is a Collector that leaves out a scrape's connection.
type scrapeCollector struct {
	c             *Collector
	local, remote netip.AddrPort
}

func (s scrapeCollector) Describe(ch chan<- *prometheus.Desc) { s.c.Describe(ch) }

func (s scrapeCollector) Collect(ch chan<- prometheus.Metric) {
	own, ok := ownNetns()
	if !ok {
		s.c.collect(ch, nil)
		return
	}
	local, remote := unzoned(s.local), unzoned(s.remote)
	s.c.collect(ch, func(conn *audit.Conn) bool {
		return conn.Netns == own && (conn.Local == local && conn.Remote == remote || conn.Local == remote && conn.Remote == local)
	})
}

// unzoned is a as audit reports addresses: IPv4-mapped IPv6 unmapped, with
// no zone.
func unzoned(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
}

// ownNetns returns the inode number of this process's network namespace,
// from its link in /proc ("net:[N]"); ok is false where there is none.
func ownNetns() (ino uint64, ok bool) {
	link, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		return 0, false
	}
	_, err = fmt.Sscanf(link, "net:[%d]", &ino)
	return ino, err == nil
}

// collect audits the host and sends the metrics of the connections for
// which skip, if not nil, is false.
func (c *Collector) collect(ch chan<- prometheus.Metric, skip func(*audit.Conn) bool) {
	ctx := context.Background()
	if c.o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.o.Timeout)
		defer cancel()
	}
	start := time.Now()
	rep, err := audit.Audit(ctx, c.o.Audit)
	took := time.Since(start)
	if err != nil {
		c.errors.Add(1)
		if c.o.ErrorLog != nil {
			c.o.ErrorLog.Error("audit failed", "err", err, "took", took)
		}
		rep = nil
	}
	if rep != nil && skip != nil {
		rep.Conns = slices.DeleteFunc(rep.Conns, func(conn audit.Conn) bool { return skip(&conn) })
	}
	send(ch, rep, took, c.errors.Load(), c.o.PerConnection)
}

// send sends the metrics of rep (none when nil), an audit that took took,
// with errors audits failed so far.
func send(ch chan<- prometheus.Metric, rep *audit.Report, took time.Duration, errors uint64, perConnection bool) {
	ch <- prometheus.MustNewConstMetric(durationDesc, prometheus.GaugeValue, took.Seconds())
	ch <- prometheus.MustNewConstMetric(errorsDesc, prometheus.CounterValue, float64(errors))
	if rep == nil {
		return
	}
	type byCommand struct {
		verdicts [len(verdicts)]int
		probing  int
	}
	counts := map[string]*byCommand{}
	var read [3]int // by audit.Method
	cgroupsKnown := false
	for i := range rep.Conns {
		conn := &rep.Conns[i]
		n := counts[conn.Command]
		if n == nil {
			n = new(byCommand)
			counts[conn.Command] = n
		}
		for j, v := range verdicts {
			if conn.Verdict == v {
				n.verdicts[j]++
			}
		}
		if conn.UnansweredProbes() > 0 {
			n.probing++
		}
		if conn.Source == audit.SourceSocket && int(conn.Method) < len(read) {
			read[conn.Method]++
		}
		cgroupsKnown = cgroupsKnown || conn.Method == audit.MethodBPF
	}
	for command, n := range counts {
		for j, v := range verdicts {
			ch <- prometheus.MustNewConstMetric(connectionsDesc, prometheus.GaugeValue, float64(n.verdicts[j]), command, v.String())
		}
		ch <- prometheus.MustNewConstMetric(probingDesc, prometheus.GaugeValue, float64(n.probing), command)
	}
	for _, m := range []audit.Method{audit.MethodBPF, audit.MethodPidfd} {
		ch <- prometheus.MustNewConstMetric(readDesc, prometheus.GaugeValue, float64(read[m]), m.String())
	}
	for _, c := range rep.Policies {
		sendPolicy(ch, c, cgroupsKnown)
	}
	if perConnection {
		sendConns(ch, rep.Conns)
	}
}

// sendPolicy sends the metrics of a policy in force; its cgroup's
// connections only when cgroupsKnown, when the BPF iterator read the
// sockets' cgroups.
func sendPolicy(ch chan<- prometheus.Metric, c audit.Coverage, cgroupsKnown bool) {
	p := c.Policy
	n := p.Counts
	for _, h := range []struct {
		how string
		n   uint64
	}{{"dialled", n.Dialled}, {"accepted", n.Accepted}, {"existing", n.Existing}} {
		ch <- prometheus.MustNewConstMetric(policySetDesc, prometheus.CounterValue, float64(h.n), p.Cgroup, h.how)
	}
	ch <- prometheus.MustNewConstMetric(policyKeptDesc, prometheus.CounterValue, float64(n.Kept), p.Cgroup)
	ch <- prometheus.MustNewConstMetric(policyYieldedDesc, prometheus.CounterValue, float64(n.Yielded), p.Cgroup)
	ch <- prometheus.MustNewConstMetric(policyFailedDesc, prometheus.CounterValue, float64(n.Failed), p.Cgroup)
	ch <- prometheus.MustNewConstMetric(policyCarryingDesc, prometheus.GaugeValue, float64(c.Carrying), p.Cgroup)
	if cgroupsKnown {
		ch <- prometheus.MustNewConstMetric(policyCgroupDesc, prometheus.GaugeValue, float64(c.Connections), p.Cgroup)
	}
	ch <- prometheus.MustNewConstMetric(policyStartDesc, prometheus.GaugeValue, float64(p.Since.UnixNano())/1e9, p.Cgroup)
}

// labelled is a connection with the values of its labels, in the order
// of connLabels.
type labelled struct {
	labels []string
	conn   *audit.Conn
}

// sendConns sends the per-connection metrics of conns in the order the
// registry sorts them in, by their labels' values in the order of the
// labels' names (command, local, pid, remote): a sorted series is sorted
// again in linear time, which on a busy host saves most of a scrape's cost
// beyond the audit.
func sendConns(ch chan<- prometheus.Metric, conns []audit.Conn) {
	ls := make([]labelled, 0, len(conns))
	for i := range conns {
		c := &conns[i]
		if c.Source != audit.SourceNone {
			ls = append(ls, labelled{[]string{strconv.Itoa(c.PID), c.Command, c.Local.String(), c.Remote.String()}, c})
		}
	}
	slices.SortFunc(ls, func(a, b labelled) int {
		return cmp.Or(
			strings.Compare(a.labels[1], b.labels[1]),
			strings.Compare(a.labels[2], b.labels[2]),
			strings.Compare(a.labels[0], b.labels[0]),
			strings.Compare(a.labels[3], b.labels[3]),
		)
	})
	for _, l := range ls {
		sendConn(ch, l.conn, l.labels)
	}
}

// sendConn sends the per-connection metrics of conn, with the values of
// its labels.
func sendConn(ch chan<- prometheus.Metric, conn *audit.Conn, labels []string) {
	enabled := 0.0
	if conn.Enabled {
		enabled = 1
	}
	ch <- prometheus.MustNewConstMetric(enabledDesc, prometheus.GaugeValue, enabled, labels...)
	if conn.Source != audit.SourceSocket {
		return
	}
	kc := conn.Config
	ch <- prometheus.MustNewConstMetric(idleDesc, prometheus.GaugeValue, kc.Idle.Seconds(), labels...)
	ch <- prometheus.MustNewConstMetric(intervalDesc, prometheus.GaugeValue, kc.Interval.Seconds(), labels...)
	ch <- prometheus.MustNewConstMetric(probesDesc, prometheus.GaugeValue, float64(kc.Count), labels...)
	ch <- prometheus.MustNewConstMetric(userTimeoutDesc, prometheus.GaugeValue, kc.UserTimeout.Seconds(), labels...)
}

// reportCollector is the metrics of one audit already made.
type reportCollector struct {
	rep           *audit.Report
	took          time.Duration
	perConnection bool
}

func (r reportCollector) Describe(ch chan<- *prometheus.Desc) {
	(&Collector{o: Options{PerConnection: r.perConnection}}).Describe(ch)
}

func (r reportCollector) Collect(ch chan<- prometheus.Metric) {
	send(ch, r.rep, r.took, 0, r.perConnection)
}

// WriteTextfile writes the metrics of rep, an audit that took took, to the
// file path, for node_exporter's textfile collector: the same metrics a
// [Collector] sends, with keepalive_scrape_errors_total 0 (an audit that
// fails writes no file). perConnection adds the per-connection metrics, as
// [Options.PerConnection] does.
//
// The file is replaced atomically: the metrics are written to a new file
// in the same folder, whose name does not end in .prom so that the
// collector never reads it half written, which is then made readable by
// all (mode 0644) and renamed to path. An error names path and says what
// is wrong, such as a folder that does not exist, and wraps the system's
// error; the file at path is then as it was.
func WriteTextfile(path string, rep *audit.Report, took time.Duration, perConnection bool) error {
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(reportCollector{rep, took, perConnection}); err != nil {
		return err
	}
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return textfileError(path, err)
	}
	return nil
}

// textfileError says why path could not be written, from the error of
// prometheus.WriteToTextfile, which names the temporary file beside path.
func textfileError(path string, err error) error {
	var pathErr *fs.PathError
	var linkErr *os.LinkError
	switch {
	case errors.As(err, &linkErr):
		err = linkErr.Err
	case errors.As(err, &pathErr):
		err = pathErr.Err
	default:
		return fmt.Errorf("metrics: cannot write %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	why := ""
	fi, serr := os.Stat(dir)
	switch {
	case errors.Is(serr, fs.ErrNotExist):
		why = "the folder " + dir + " does not exist"
	case errors.Is(serr, syscall.ENOTDIR), serr == nil && !fi.IsDir():
		why = dir + " is not a folder"
	case isDir(path):
		why = "it is a folder"
	case errors.Is(err, fs.ErrPermission):
		why = "no permission to create a file in " + dir
	}
	if why == "" {
		return fmt.Errorf("metrics: cannot write %s: %w", path, err)
	}
	return fmt.Errorf("metrics: cannot write %s: %s (%w)", path, why, err)
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}
