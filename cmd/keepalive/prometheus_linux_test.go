package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/testproc"
)

// monitoring is the folder of the alerting rules and the dashboard.
const monitoring = "../../ops/monitoring"

// TestPrometheus is the exporter end to end: a real Prometheus (Debian's
// package) scrapes keepalive exporter, run as a process of its own, while
// a process the test started holds connections with known Configs; the
// test asks Prometheus' HTTP API for the values, the counts by verdict,
// the alert the shipped rules raise, and every query of the shipped
// dashboard.
//
// A policy is in force on an empty cgroup the test made, so that the
// dashboard's panels of policies find data.
//
// The exporter audits the helper only (-pid), so that a busy host, such
// as one where other tests open 100,000 connections at the same time,
// cannot slow its scrapes past the short scrape timeout.
func TestPrometheus(t *testing.T) {
	prometheus, err := exec.LookPath("prometheus")
	if err != nil {
		skipOutsideCI(t, "prometheus (Debian package prometheus) is not installed")
	}
	// A policy, on a cgroup of its own with no process, for the
	// dashboard's panels of policies.
	cg := enforceLab(t)
	r := runArgs(context.Background(), "enforce", "-cgroup", cg, "-idle", "61s")
	require.Equal(t, exitOK, r.code, r.stderr)
	t.Cleanup(func() { runArgs(context.Background(), "enforce", "-remove", "-cgroup", cg) })
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)

	// 2 connections that are ok against an idle timeout of 350s and
	// detection within 2m (first probe after 30s, dead peer noticed
	// within 30s + 3 × 5s, or the user timeout of 45s), and 3 at risk
	// (first probe after 600s; also slow to detect, but at-risk comes
	// first). Their 5 accepted ends have keepalive off.
	ok := keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 45 * time.Second}
	risk := keepalive.Config{Idle: 600 * time.Second, Interval: 10 * time.Second, Count: 5}
	h := startHold(t, "ka-hold", "2|3", ok.String()+"|"+risk.String())

	exporter, err := testproc.Start(t, testproc.Opts{
		Env:  []string{helperEnv + "=run"},
		Args: []string{"exporter", "-listen", "127.0.0.1:0", "-pid", fmt.Sprint(h.PID), "-idle-timeout", "350s", "-detect", "2m", "-per-connection"},
	})
	require.NoError(t, err)
	line, err := exporter.Stdout.ReadString('\n')
	require.NoError(t, err, "the exporter exited before it served")
	target := serving(t, line)

	api := startPrometheus(t, prometheus, target)
	q := func(query string) []sample {
		t.Helper()
		return promQuery(t, api, query)
	}
	// Wait for three successful scrapes, so that rates and alerts have
	// samples.
	waitFor(t, 60*time.Second, "three scrapes of the exporter", func() bool {
		s := promQuery(t, api, `sum_over_time(up{job="keepalive"}[5m]) >= 3`)
		return len(s) == 1
	})

	up := q(`up{job="keepalive"}`)
	require.Len(t, up, 1)
	assert.Equal(t, 1.0, up[0].value, "up")

	verdicts := map[string]float64{}
	for _, s := range q(`keepalive_connections{job="keepalive",command="ka-hold"}`) {
		verdicts[s.labels["verdict"]] = s.value
	}
	assert.Equal(t, map[string]float64{"ok": 2, "at-risk": 3, "slow-detect": 0, "off": 5, "unknown": 0}, verdicts, "connections by verdict")
	atRisk := q(`sum(keepalive_connections{verdict="at-risk"})`)
	require.Len(t, atRisk, 1)
	assert.Equal(t, 3.0, atRisk[0].value, "the at-risk count")

	// The values of each connection, exactly: the dialed ends with their
	// Config, the accepted ends, on the helper's listening port, with
	// keepalive off and the system's values.
	values := func(on bool, c keepalive.Config) map[string]float64 {
		return map[string]float64{
			"keepalive_enabled": b2f(on), "keepalive_idle_seconds": c.Idle.Seconds(), "keepalive_interval_seconds": c.Interval.Seconds(),
			"keepalive_probes": float64(c.Count), "keepalive_user_timeout_seconds": c.UserTimeout.Seconds(),
		}
	}
	server := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))
	want := map[string]map[string]float64{} // "local remote" → metric → value
	for i, c := range []keepalive.Config{ok, risk} {
		for _, local := range h.Dialed[i] {
			want[local+" "+server] = values(true, c)
			want[server+" "+local] = values(false, keepalive.Config{Idle: sys.Idle, Interval: sys.Interval, Count: sys.Count})
		}
	}
	require.Len(t, want, 10)
	got := map[string]map[string]float64{}
	for _, s := range q(fmt.Sprintf(`{__name__=~"keepalive_(enabled|idle_seconds|interval_seconds|probes|user_timeout_seconds)",pid="%d"}`, h.PID)) {
		assert.Equal(t, "ka-hold", s.labels["command"])
		key := s.labels["local"] + " " + s.labels["remote"]
		if got[key] == nil {
			got[key] = map[string]float64{}
		}
		got[key][s.labels["__name__"]] = s.value
	}
	assert.Equal(t, want, got, "per-connection values")

	errs := q(`keepalive_scrape_errors_total{job="keepalive"}`)
	require.Len(t, errs, 1)
	assert.Equal(t, 0.0, errs[0].value, "scrape errors")
	took := q(`keepalive_scrape_duration_seconds{job="keepalive"}`)
	require.Len(t, took, 1)
	t.Logf("the exporter's audit took %.3fs", took[0].value)
	assert.Greater(t, took[0].value, 0.0)

	// The shipped rules: the at-risk alert is pending (it fires after 15
	// minutes), the slow-detect one is not.
	alerts := q(`ALERTS{alertname=~"Keepalive.*"}`)
	require.Len(t, alerts, 1, "%v", alerts)
	assert.Equal(t, "KeepaliveConnectionsAtRisk", alerts[0].labels["alertname"])
	assert.Equal(t, "pending", alerts[0].labels["alertstate"])
	assert.Equal(t, "ka-hold", alerts[0].labels["command"])

	// Every query of the shipped dashboard runs and finds data.
	exprs := dashboardExprs(t, filepath.Join(monitoring, "dashboard.json"))
	require.NotEmpty(t, exprs)
	for _, e := range exprs {
		query := strings.NewReplacer("$instance", ".*", "$__rate_interval", "1m").Replace(e)
		assert.NotEmpty(t, q(query), "dashboard query %q", e)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// startPrometheus starts prometheus with a configuration of its own in a
// temporary folder, scraping target every 2 seconds, with a timeout of 2
// seconds (an audit of the helper alone takes 0.5s when the race detector
// is on and 100,000 other connections are open), with the shipped alerting
// rules, and returns the address of its HTTP API once it is ready.
func startPrometheus(t *testing.T, prometheus, target string) string {
	t.Helper()
	dir := t.TempDir()
	rules, err := filepath.Abs(filepath.Join(monitoring, "alerts.yml"))
	require.NoError(t, err)
	conf := fmt.Sprintf(`global:
  scrape_interval: 2s
  scrape_timeout: 2s
  evaluation_interval: 1s
rule_files:
  - %s
scrape_configs:
  - job_name: keepalive
    static_configs:
      - targets: ['%s']
`, rules, target)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(conf), 0o600))
	// Prometheus takes no port 0: take a free port, and try again should
	// another process take it first.
	for try := 1; ; try++ {
		addr := freePort(t)
		cmd := exec.Command(prometheus,
			"--config.file="+filepath.Join(dir, "prometheus.yml"),
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--log.level=warn",
		)
		log := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = log, log
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		require.NoError(t, spawn(cmd.Start))
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		stop := func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
				<-exited
			}
		}
		ready := false
		deadline := time.Now().Add(30 * time.Second)
		for !ready && time.Now().Before(deadline) {
			select {
			case <-exited:
				deadline = time.Now()
				continue
			case <-time.After(100 * time.Millisecond):
			}
			resp, err := http.Get("http://" + addr + "/-/ready")
			if err == nil {
				resp.Body.Close()
				ready = resp.StatusCode == http.StatusOK
			}
		}
		if ready {
			t.Cleanup(func() {
				stop()
				if t.Failed() {
					t.Logf("prometheus said:\n%s", log)
				}
			})
			return addr
		}
		stop()
		if try == 3 || !strings.Contains(log.String(), "address already in use") {
			t.Fatalf("prometheus did not start on %s:\n%s", addr, log)
		}
	}
}

// freePort returns a loopback address whose port was free a moment ago.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// sample is one element of an instant vector.
type sample struct {
	labels map[string]string
	value  float64
}

// promQuery asks Prometheus' HTTP API at addr for the instant vector of
// query, now.
func promQuery(t *testing.T, addr, query string) []sample {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/api/v1/query?query=" + url.QueryEscape(query))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	require.NoError(t, json.Unmarshal(b, &r), "%s", b)
	require.Equal(t, "success", r.Status, "query %q: %s", query, r.Error)
	require.Equal(t, "vector", r.Data.ResultType, "query %q", query)
	var out []sample
	for _, res := range r.Data.Result {
		v, err := strconv.ParseFloat(res.Value[1].(string), 64)
		require.NoError(t, err)
		out = append(out, sample{res.Metric, v})
	}
	return out
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// dashboardExprs returns the query of every panel of the Grafana dashboard
// at path, rows' panels included.
func dashboardExprs(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(b, &d))
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(panels []json.RawMessage) {
		for _, raw := range panels {
			var p struct {
				Panels  []json.RawMessage `json:"panels"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			}
			require.NoError(t, json.Unmarshal(raw, &p))
			for _, tg := range p.Targets {
				exprs = append(exprs, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return exprs
}
