package metrics_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
	"github.com/keepalive-go/keepalive/internal/testproc"
	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/policytest"
	"github.com/keepalive-go/keepalive/ops/metrics"
)

// The test binary doubles as a helper that holds connections
// (testproc.Hold), for the policy's cgroup.
const helperEnv = "METRICS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "hold" {
		os.Exit(testproc.Hold())
	}
	code := m.Run()
	testproc.Cleanup()
	os.Exit(code)
}

// pair opens a connection on loopback whose dialed end carries c and whose
// accepted end has keepalive off; both ends and the listener are closed at
// cleanup.
func pair(t *testing.T, c keepalive.Config) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := (&net.ListenConfig{KeepAlive: -1}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		a, _ := ln.Accept()
		ch <- a
	}()
	d, err := (&keepalive.Dialer{Config: c}).Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	a := <-ch
	require.NotNil(t, a)
	t.Cleanup(func() { a.Close() })
	return d, a
}

// ownConns selects the connections of this process to or from conn's
// local port: both ends of a pair.
func ownConns(conn net.Conn) audit.Filter {
	return audit.Filter{PID: os.Getpid(), Port: uint16(conn.LocalAddr().(*net.TCPAddr).Port)}
}

// command is this process's command, as audit reports it.
func command(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/comm")
	require.NoError(t, err)
	return strings.TrimSpace(string(b))
}

// connLabels are the labels of conn's per-connection series.
func connLabels(t *testing.T, conn net.Conn) string {
	return fmt.Sprintf(`command=%q,local="%v",pid="%d",remote="%v"`, command(t), conn.LocalAddr(), os.Getpid(), conn.RemoteAddr())
}

// TestCollector checks the metrics of a pair of connections with known
// values: the aggregates by command and verdict, zeros included, and the
// per-connection values, exactly.
func TestCollector(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	dialed, accepted := pair(t, keepalive.Config{Idle: 400 * time.Second, Interval: 7 * time.Second, Count: 4, UserTimeout: 90 * time.Second})
	for _, tt := range []struct {
		name          string
		perConnection bool
		kernelOnly    bool
		want          string
	}{
		{"aggregates", false, false, `
# HELP keepalive_connections TCP connections by the command of the process that holds them (empty when not known) and their keepalive verdict: ok, at-risk (a middlebox with the path's idle timeout forgets the flow), slow-detect (a vanished peer is noticed too late), off (keepalive off) or unknown (the values could not be read).
# TYPE keepalive_connections gauge
keepalive_connections{command="COMMAND",verdict="at-risk"} 1
keepalive_connections{command="COMMAND",verdict="off"} 1
keepalive_connections{command="COMMAND",verdict="ok"} 0
keepalive_connections{command="COMMAND",verdict="slow-detect"} 0
keepalive_connections{command="COMMAND",verdict="unknown"} 0
# HELP keepalive_probing_connections TCP connections, by the command of the process that holds them (empty when not known), whose keepalive probes are out unanswered now: the peer has not answered for at least an interval, and the connection is dropped when the count reaches its TCP_KEEPCNT.
# TYPE keepalive_probing_connections gauge
keepalive_probing_connections{command="COMMAND"} 0
# HELP keepalive_read_connections TCP connections whose keepalive values were read from the socket, by method: bpf (a BPF TCP iterator, no ptrace) or pidfd (pidfd_getfd, ptrace).
# TYPE keepalive_read_connections gauge
keepalive_read_connections{method="bpf"} BPF_READ
keepalive_read_connections{method="pidfd"} PIDFD_READ
# HELP keepalive_scrape_errors_total Audits of the host's TCP connections that failed.
# TYPE keepalive_scrape_errors_total counter
keepalive_scrape_errors_total 0
`},
		{"per connection", true, false, fmt.Sprintf(`
# HELP keepalive_enabled Whether keepalive (SO_KEEPALIVE) is on for the connection: 1 on, 0 off.
# TYPE keepalive_enabled gauge
keepalive_enabled{DIALED} 1
keepalive_enabled{ACCEPTED} 0
# HELP keepalive_idle_seconds Idle time before the first keepalive probe (TCP_KEEPIDLE) in force on the connection.
# TYPE keepalive_idle_seconds gauge
keepalive_idle_seconds{DIALED} 400
keepalive_idle_seconds{ACCEPTED} %v
# HELP keepalive_interval_seconds Time between keepalive probes (TCP_KEEPINTVL) in force on the connection.
# TYPE keepalive_interval_seconds gauge
keepalive_interval_seconds{DIALED} 7
keepalive_interval_seconds{ACCEPTED} %v
# HELP keepalive_probes Unanswered keepalive probes before the connection is dropped (TCP_KEEPCNT) in force on the connection.
# TYPE keepalive_probes gauge
keepalive_probes{DIALED} 4
keepalive_probes{ACCEPTED} %d
# HELP keepalive_user_timeout_seconds Longest time sent data may stay unacknowledged (TCP_USER_TIMEOUT) on the connection; 0 for none.
# TYPE keepalive_user_timeout_seconds gauge
keepalive_user_timeout_seconds{DIALED} 90
keepalive_user_timeout_seconds{ACCEPTED} 0
`, sys.Idle.Seconds(), sys.Interval.Seconds(), sys.Count)},
		{"kernel only", true, true, `
# HELP keepalive_connections TCP connections by the command of the process that holds them (empty when not known) and their keepalive verdict: ok, at-risk (a middlebox with the path's idle timeout forgets the flow), slow-detect (a vanished peer is noticed too late), off (keepalive off) or unknown (the values could not be read).
# TYPE keepalive_connections gauge
keepalive_connections{command="COMMAND",verdict="at-risk"} 1
keepalive_connections{command="COMMAND",verdict="off"} 1
keepalive_connections{command="COMMAND",verdict="ok"} 0
keepalive_connections{command="COMMAND",verdict="slow-detect"} 0
keepalive_connections{command="COMMAND",verdict="unknown"} 0
# HELP keepalive_read_connections TCP connections whose keepalive values were read from the socket, by method: bpf (a BPF TCP iterator, no ptrace) or pidfd (pidfd_getfd, ptrace).
# TYPE keepalive_read_connections gauge
keepalive_read_connections{method="bpf"} 0
keepalive_read_connections{method="pidfd"} 0
# HELP keepalive_enabled Whether keepalive (SO_KEEPALIVE) is on for the connection: 1 on, 0 off.
# TYPE keepalive_enabled gauge
keepalive_enabled{DIALED} 1
keepalive_enabled{ACCEPTED} 0
`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := metrics.NewCollector(metrics.Options{
				Audit:         audit.Options{Filter: ownConns(dialed), Criteria: audit.Criteria{IdleTimeout: 350 * time.Second}, KernelOnly: tt.kernelOnly},
				PerConnection: tt.perConnection,
			})
			// As root, the BPF iterator reads both ends; else pidfd_getfd.
			bpf, pidfd := "2", "0"
			if os.Geteuid() != 0 {
				bpf, pidfd = pidfd, bpf
			}
			want := strings.NewReplacer("COMMAND", command(t), "DIALED", connLabels(t, dialed), "ACCEPTED", connLabels(t, accepted), "BPF_READ", bpf, "PIDFD_READ", pidfd).Replace(tt.want)
			names := regexp.MustCompile(`(?m)^# TYPE (\S+)`).FindAllStringSubmatch(want, -1)
			var only []string
			for _, n := range names {
				only = append(only, n[1])
			}
			assert.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), only...))
			if !tt.perConnection {
				assert.Equal(t, 10, testutil.CollectAndCount(c), "5 verdicts and the probing of one command, the connections read by 2 methods, the duration and the errors")
			}
			problems, err := testutil.CollectAndLint(c)
			require.NoError(t, err)
			assert.Empty(t, problems, "promlint")
		})
	}
}

// TestCollectorErrors checks that a failed audit is counted and logged,
// and leaves out the connection metrics.
func TestCollectorErrors(t *testing.T) {
	var log bytes.Buffer
	for _, tt := range []struct {
		name string
		o    metrics.Options
		err  string // in the log
	}{
		{"no such process", metrics.Options{Audit: audit.Options{Filter: audit.Filter{PID: 999999999}}}, "999999999"},
		{"timed out", metrics.Options{Timeout: time.Nanosecond}, "context deadline exceeded"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log.Reset()
			tt.o.ErrorLog = slog.New(slog.NewTextHandler(&log, nil))
			c := metrics.NewCollector(tt.o)
			reg := prometheus.NewPedanticRegistry()
			require.NoError(t, reg.Register(c))
			for i := 1; i <= 2; i++ {
				mfs, err := reg.Gather()
				require.NoError(t, err)
				var names []string
				for _, mf := range mfs {
					names = append(names, mf.GetName())
					if mf.GetName() == "keepalive_scrape_errors_total" {
						assert.Equal(t, float64(i), mf.GetMetric()[0].GetCounter().GetValue())
					}
				}
				assert.Equal(t, []string{"keepalive_scrape_duration_seconds", "keepalive_scrape_errors_total"}, names)
			}
			assert.Equal(t, 2, strings.Count(log.String(), `msg="audit failed"`), log.String())
			assert.Contains(t, log.String(), tt.err)
		})
	}
}

// TestWriteTextfile checks that the file holds the metrics a Collector
// sends for the same connections, readable by all, with no other file
// left in the folder.
func TestWriteTextfile(t *testing.T) {
	dialed, _ := pair(t, keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3})
	o := audit.Options{Filter: ownConns(dialed), Criteria: audit.Criteria{IdleTimeout: 350 * time.Second, Detect: 30 * time.Second}}
	dir := t.TempDir()
	path := filepath.Join(dir, "keepalive.prom")
	rep, err := audit.Audit(context.Background(), o)
	require.NoError(t, err)
	require.Len(t, rep.Conns, 2)
	require.NoError(t, metrics.WriteTextfile(path, rep, 1500*time.Millisecond, true))

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	t.Logf("%s", b)
	assert.Contains(t, string(b), "\nkeepalive_scrape_duration_seconds 1.5\n")
	assert.Contains(t, string(b), fmt.Sprintf("\nkeepalive_connections{command=%q,verdict=\"slow-detect\"} 1\n", command(t)), "30s + 3 × 5s is over 30s")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, ents, 1)

	c := metrics.NewCollector(metrics.Options{Audit: o, PerConnection: true})
	assert.NoError(t, testutil.CollectAndCompare(c, bytes.NewReader(b),
		"keepalive_connections", "keepalive_scrape_errors_total", "keepalive_enabled", "keepalive_idle_seconds",
		"keepalive_interval_seconds", "keepalive_probes", "keepalive_user_timeout_seconds"),
		"the file and a scrape differ")

}

// TestWriteTextfileErrors checks that a file that cannot be written is
// named as given, with what is wrong, and never by the temporary file
// written beside it; that the error wraps the system's; and that nothing
// is left behind.
func TestWriteTextfileErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	folder := filepath.Join(dir, "k.prom")
	require.NoError(t, os.Mkdir(folder, 0o755))
	rep := &audit.Report{}
	for _, tt := range []struct {
		path, msg string
		is        error
	}{
		{filepath.Join(dir, "missing", "k.prom"), "metrics: cannot write DIR/missing/k.prom: the folder DIR/missing does not exist (no such file or directory)", os.ErrNotExist},
		{filepath.Join(file, "k.prom"), "metrics: cannot write DIR/file/k.prom: DIR/file is not a folder (not a directory)", syscall.ENOTDIR},
		{folder, "metrics: cannot write DIR/k.prom: it is a folder (file exists)", syscall.EEXIST},
		// sysfs refuses new files, to root too.
		{"/sys/keepalive-test.prom", "metrics: cannot write /sys/keepalive-test.prom: no permission to create a file in /sys (permission denied)", os.ErrPermission},
	} {
		err := metrics.WriteTextfile(tt.path, rep, time.Second, false)
		require.Error(t, err, tt.path)
		assert.Equal(t, strings.ReplaceAll(tt.msg, "DIR", dir), err.Error())
		assert.ErrorIs(t, err, tt.is)
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"file", "k.prom"}, names, "no temporary file left")
}

// TestCollectorOrder checks that the per-connection series of each metric
// come in the order the registry sorts them in (by label values, the
// labels in the order of their names), which makes its sort linear on a
// busy host.
func TestCollectorOrder(t *testing.T) {
	var local []net.Conn
	for range 4 {
		d, a := pair(t, keepalive.Config{Idle: time.Minute})
		local = append(local, d, a)
	}
	c := metrics.NewCollector(metrics.Options{Audit: audit.Options{Filter: audit.Filter{PID: os.Getpid(), Remote: netip.MustParsePrefix("127.0.0.0/8")}}, PerConnection: true})
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	series := map[string][][]string{} // metric → label values of each series, in the order sent
	for m := range ch {
		var pb dto.Metric
		require.NoError(t, m.Write(&pb))
		var values []string
		for _, lp := range pb.GetLabel() {
			values = append(values, lp.GetValue())
		}
		name := m.Desc().String()
		series[name] = append(series[name], values)
	}
	n := 0
	for name, s := range series {
		if !strings.Contains(name, `variableLabels: {pid,command,local,remote}`) {
			continue
		}
		n++
		assert.GreaterOrEqual(t, len(s), len(local), name)
		assert.True(t, slices.IsSortedFunc(s, slices.Compare[[]string]), "%s: sent in the registry's order:\n%v", name, s)
	}
	assert.Equal(t, 5, n, "per-connection metrics")
}

// TestScrape checks that the Collector of a scrape leaves out the scrape's
// connection, both ends, matched by its addresses, and nothing else; and
// that it leaves out nothing when the audit lists another network
// namespace, where a connection with the same addresses is another
// connection.
func TestScrape(t *testing.T) {
	dialed, accepted := pair(t, keepalive.Config{Idle: time.Minute})
	other, _ := pair(t, keepalive.Config{Idle: time.Minute})
	addrs := func(c net.Conn) (local, remote netip.AddrPort) {
		return c.LocalAddr().(*net.TCPAddr).AddrPort(), c.RemoteAddr().(*net.TCPAddr).AddrPort()
	}
	c := metrics.NewCollector(metrics.Options{Audit: audit.Options{Filter: audit.Filter{PID: os.Getpid(), Remote: netip.MustParsePrefix("127.0.0.0/8")}}, PerConnection: true})
	for _, tt := range []struct {
		name   string
		scrape net.Conn
	}{{"the exporter's end", accepted}, {"the scraper's end", dialed}} {
		t.Run(tt.name, func(t *testing.T) {
			local, remote := addrs(tt.scrape)
			got := enabledLocals(t, c.Scrape(local, remote))
			assert.NotContains(t, got, dialed.LocalAddr().String())
			assert.NotContains(t, got, accepted.LocalAddr().String())
			assert.Contains(t, got, other.LocalAddr().String(), "another connection of the same process")
			assert.Contains(t, got, other.RemoteAddr().String(), "another connection to the same port")
		})
	}
	t.Run("IPv4-mapped addresses", func(t *testing.T) {
		local, remote := addrs(accepted)
		mapped := func(a netip.AddrPort) netip.AddrPort {
			return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
		}
		got := enabledLocals(t, c.Scrape(mapped(local), mapped(remote)))
		assert.NotContains(t, got, accepted.LocalAddr().String())
		assert.NotContains(t, got, dialed.LocalAddr().String())
	})

	t.Run("another namespace", func(t *testing.T) {
		if os.Geteuid() != 0 {
			if os.Getenv("CI") != "" {
				t.Fatal("needs root: a network namespace of its own")
			}
			t.Skip("needs root: a network namespace of its own")
		}
		for _, tool := range []string{"unshare", "ip", "socat"} {
			if _, err := exec.LookPath(tool); err != nil {
				if os.Getenv("CI") != "" {
					t.Fatalf("%s is not installed", tool)
				}
				t.Skipf("%s is not installed", tool)
			}
		}
		// In a network namespace of its own, socat holds a connection from
		// 127.0.0.1:40000 to 127.0.0.1:9977, the addresses a scrape of an
		// exporter on 127.0.0.1:9977 may have here.
		const script = `ip link set lo up && socat TCP-LISTEN:9977,bind=127.0.0.1 SYSTEM:"sleep 60" & sleep 0.3; exec socat TCP:127.0.0.1:9977,bind=127.0.0.1:40000 SYSTEM:"sleep 60"`
		// unshare runs sh in the namespace as the same process, which runs
		// the client as the same process again: its pid is cmd's.
		cmd := exec.Command("unshare", "--net", "sh", "-c", script)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() })
		o := metrics.Options{Audit: audit.Options{Filter: audit.Filter{PID: cmd.Process.Pid}}, PerConnection: true, ErrorLog: slog.New(slog.NewTextHandler(os.Stderr, nil))}
		local, remote := netip.MustParseAddrPort("127.0.0.1:9977"), netip.MustParseAddrPort("127.0.0.1:40000")
		var got []string
		for deadline := time.Now().Add(10 * time.Second); len(got) == 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			got = enabledLocals(t, metrics.NewCollector(o))
		}
		require.Equal(t, []string{"127.0.0.1:40000"}, got, "socat's connection in its namespace")
		assert.Equal(t, got, enabledLocals(t, metrics.NewCollector(o).Scrape(local, remote)), "not the scrape's, which is in this namespace")
		assert.Equal(t, got, enabledLocals(t, metrics.NewCollector(o).Scrape(remote, local)), "not the scrape's, which is in this namespace")

		// An audit of every process lists socat's namespace too, and
		// leaves out only the scrape's connection in this one.
		all := metrics.Options{Audit: audit.Options{Filter: audit.Filter{Port: 9977}}, PerConnection: true}
		var ours []string
		for _, s := range enabledSeries(t, metrics.NewCollector(all).Scrape(local, remote)) {
			if pid, err := strconv.Atoi(s["pid"]); err == nil && pgrp(pid) == cmd.Process.Pid {
				ours = append(ours, s["local"])
			}
		}
		assert.ElementsMatch(t, []string{"127.0.0.1:40000", "127.0.0.1:9977"}, ours, "both ends of socat's connection, in its namespace")
	})
}

// pgrp returns the process group of process pid; zero when it cannot be
// read.
func pgrp(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid pgrp ...
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

// enabledSeries collects c and returns the labels of each
// keepalive_enabled series.
func enabledSeries(t *testing.T, c prometheus.Collector) []map[string]string {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	var series []map[string]string
	for m := range ch {
		if !strings.Contains(m.Desc().String(), `"keepalive_enabled"`) {
			continue
		}
		var pb dto.Metric
		require.NoError(t, m.Write(&pb))
		labels := map[string]string{}
		for _, l := range pb.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		series = append(series, labels)
	}
	return series
}

// enabledLocals collects c and returns the local address of each
// connection with a keepalive_enabled series.
func enabledLocals(t *testing.T, c prometheus.Collector) []string {
	t.Helper()
	var locals []string
	for _, s := range enabledSeries(t, c) {
		locals = append(locals, s["local"])
	}
	return locals
}

// TestCollectorProbing checks keepalive_probing_connections for a
// connection whose peer stopped answering (a socket filter drops
// everything it receives), against tcp_info's count read on the socket.
func TestCollectorProbing(t *testing.T) {
	dialed, accepted := pair(t, keepalive.Config{Idle: time.Second, Interval: 3 * time.Second, Count: 20})
	dropAll(t, accepted)
	c := metrics.NewCollector(metrics.Options{Audit: audit.Options{Filter: ownConns(dialed)}})
	want := fmt.Sprintf(`
# HELP keepalive_probing_connections TCP connections, by the command of the process that holds them (empty when not known), whose keepalive probes are out unanswered now: the peer has not answered for at least an interval, and the connection is dropped when the count reaches its TCP_KEEPCNT.
# TYPE keepalive_probing_connections gauge
keepalive_probing_connections{command=%q} 1
`, command(t))
	deadline := time.Now().Add(30 * time.Second)
	for probesOut(t, dialed) == 0 {
		require.True(t, time.Now().Before(deadline), "no probe unanswered within 30s")
		time.Sleep(100 * time.Millisecond)
	}
	assert.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "keepalive_probing_connections"))
	assert.Positive(t, probesOut(t, dialed), "still probing after the collection")
}

// dropAll attaches to c a socket filter that drops everything it
// receives: its peer's probes go unanswered, as a vanished peer's would.
func dropAll(t *testing.T, c net.Conn) {
	t.Helper()
	require.NoError(t, sockopts.DropAll(c.(*net.TCPConn)))
}

// probesOut reads tcp_info's count of unanswered probes on c.
func probesOut(t *testing.T, c net.Conn) int {
	t.Helper()
	n, err := sockopts.Probes(c.(*net.TCPConn))
	require.NoError(t, err)
	return n
}

// TestCollectorPolicy checks the metrics of a policy the test puts on a
// cgroup it made, whose process holds a connection made before the
// policy, by either method of reading; through pidfd_getfd the sockets'
// cgroups are not known, and their count is left out.
func TestCollectorPolicy(t *testing.T) {
	l := policytest.New(t)
	cg := l.Cgroup()
	_, held, err := testproc.StartHoldWith(t, testproc.Opts{Env: []string{helperEnv + "=hold"}, Cgroup: cg}, testproc.HoldSpec{Groups: []testproc.Group{{Pairs: 1, Config: "off"}}})
	require.NoError(t, err)
	p := l.Enforce(cg, keepalive.Config{Idle: 61 * time.Second}, enforce.Filter{})
	for _, m := range []audit.Method{audit.MethodBPF, audit.MethodPidfd} {
		t.Run(m.String(), func(t *testing.T) {
			c := metrics.NewCollector(metrics.Options{Audit: audit.Options{Filter: audit.Filter{PID: held.PID}, Method: m, BPFFS: l.BPFFS}})
			want := `
# HELP keepalive_policy_carrying_connections Audited TCP connections that carry the keepalive policy on the cgroup now: it set them and is still in force.
# TYPE keepalive_policy_carrying_connections gauge
keepalive_policy_carrying_connections{cgroup="CG"} 2
# HELP keepalive_policy_failed_options_total Options the kernel refused to set for the keepalive policy on the cgroup.
# TYPE keepalive_policy_failed_options_total counter
keepalive_policy_failed_options_total{cgroup="CG"} 0
# HELP keepalive_policy_kept_setsockopt_total setsockopt calls of the cgroup's processes that the keepalive policy kept from changing an option it sets (policy wins).
# TYPE keepalive_policy_kept_setsockopt_total counter
keepalive_policy_kept_setsockopt_total{cgroup="CG"} 0
# HELP keepalive_policy_set_connections_total Connections the keepalive policy on the cgroup has set since it was put in force, by how it reached them: dialled, accepted, existing (established before it).
# TYPE keepalive_policy_set_connections_total counter
keepalive_policy_set_connections_total{cgroup="CG",how="accepted"} 0
keepalive_policy_set_connections_total{cgroup="CG",how="dialled"} 0
keepalive_policy_set_connections_total{cgroup="CG",how="existing"} 2
# HELP keepalive_policy_start_time_seconds When the keepalive policy on the cgroup was put in force, in seconds since the epoch.
# TYPE keepalive_policy_start_time_seconds gauge
keepalive_policy_start_time_seconds{cgroup="CG"} START
# HELP keepalive_policy_yielded_connections_total Connections on which the keepalive policy on the cgroup left options to the program's own values (program wins).
# TYPE keepalive_policy_yielded_connections_total counter
keepalive_policy_yielded_connections_total{cgroup="CG"} 0
`
			names := []string{"keepalive_policy_carrying_connections", "keepalive_policy_failed_options_total", "keepalive_policy_kept_setsockopt_total",
				"keepalive_policy_set_connections_total", "keepalive_policy_start_time_seconds", "keepalive_policy_yielded_connections_total", "keepalive_policy_cgroup_connections"}
			if m == audit.MethodBPF {
				want += `# HELP keepalive_policy_cgroup_connections Audited TCP connections whose socket belongs to the policy's cgroup or one below it.
# TYPE keepalive_policy_cgroup_connections gauge
keepalive_policy_cgroup_connections{cgroup="CG"} 2
`
			}
			want = strings.NewReplacer("CG", cg, "START", fmt.Sprint(float64(p.Since.UnixNano())/1e9)).Replace(want)
			assert.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), names...))
			problems, err := testutil.CollectAndLint(c)
			require.NoError(t, err)
			assert.Empty(t, problems, "promlint")
		})
	}
}
