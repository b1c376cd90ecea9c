package monitoring_test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/internal/policytest"
	"github.com/keepalive-go/keepalive/ops/metrics"
)

// promtool returns the path of promtool, or skips (in CI fails) the test.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("promtool (Debian package prometheus) is not installed")
		}
		t.Skip("promtool (Debian package prometheus) is not installed")
	}
	return p
}

// TestRules checks alerts.yml with promtool, and runs its unit tests,
// alerts_test.yml.
func TestRules(t *testing.T) {
	p := promtool(t)
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			out, err := exec.Command(p, args...).CombinedOutput()
			t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
			assert.NoError(t, err)
			assert.Contains(t, string(out), "SUCCESS")
		})
	}
}

// exported returns the names of the metrics the exporter exports, read
// from a real collection with per-connection metrics of a connection this
// test opened, and a policy on a cgroup it made.
func exported(t *testing.T) []string {
	t.Helper()
	l := policytest.New(t)
	l.Enforce(l.Cgroup(), keepalive.Config{Idle: time.Minute}, enforce.Filter{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
	}()
	d, err := (&keepalive.Dialer{Config: keepalive.Config{Idle: time.Minute}}).Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(metrics.Options{
		Audit:         audit.Options{Filter: audit.Filter{PID: os.Getpid(), Port: uint16(d.LocalAddr().(*net.TCPAddr).Port)}, BPFFS: l.BPFFS},
		PerConnection: true,
	}))
	mfs, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	// What the package documents: a change there is a change here.
	require.ElementsMatch(t, []string{
		"keepalive_connections", "keepalive_probing_connections", "keepalive_read_connections",
		"keepalive_scrape_duration_seconds", "keepalive_scrape_errors_total",
		"keepalive_enabled", "keepalive_idle_seconds", "keepalive_interval_seconds", "keepalive_probes", "keepalive_user_timeout_seconds",
		"keepalive_policy_set_connections_total", "keepalive_policy_kept_setsockopt_total", "keepalive_policy_yielded_connections_total",
		"keepalive_policy_failed_options_total", "keepalive_policy_carrying_connections", "keepalive_policy_cgroup_connections",
		"keepalive_policy_start_time_seconds",
	}, names)
	return names
}

// metricName finds the names of metrics in a PromQL expression: the
// identifiers of the exporter's namespace.
var metricName = regexp.MustCompile(`\bkeepalive_[a-z_]+\b`)

// checkExpr checks that expr names at least one metric and only metrics
// in names.
func checkExpr(t *testing.T, where, expr string, names []string) {
	t.Helper()
	used := metricName.FindAllString(expr, -1)
	assert.NotEmpty(t, used, "%s: %q names no metric of the exporter", where, expr)
	for _, m := range used {
		assert.Contains(t, names, m, "%s: %q names a metric the exporter does not export", where, expr)
	}
}

// TestRulesMetrics checks that every rule of alerts.yml asks for metrics
// the exporter exports.
func TestRulesMetrics(t *testing.T) {
	names := exported(t)
	b, err := os.ReadFile("alerts.yml")
	require.NoError(t, err)
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(b, &rules))
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			checkExpr(t, r.Alert, r.Expr, names)
			n++
		}
	}
	assert.Equal(t, 4, n, "rules")
}

// Dashboard is what the test reads of dashboard.json.
type Dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []Panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// Panel is a panel of the dashboard; a row holds panels of its own.
type Panel struct {
	ID      int     `json:"id"`
	Title   string  `json:"title"`
	Type    string  `json:"type"`
	GridPos *Grid   `json:"gridPos"`
	Panels  []Panel `json:"panels"`
	Targets []struct {
		Expr  string `json:"expr"`
		RefID string `json:"refId"`
	} `json:"targets"`
}

// Grid is a panel's place.
type Grid struct{ X, Y, W, H int }

// readDashboard reads the dashboard at path.
func readDashboard(t *testing.T, path string) Dashboard {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var d Dashboard
	require.NoError(t, json.Unmarshal(b, &d))
	return d
}

// variables are the dashboard's own variable and Grafana's that its
// queries may use.
var variables = []string{"$instance", "$__rate_interval"}

// TestDashboard checks dashboard.json: it parses, its panels have unique
// ids and places, and every panel's query asks for metrics the exporter
// exports, with no variable the dashboard does not define.
func TestDashboard(t *testing.T) {
	names := exported(t)
	d := readDashboard(t, "dashboard.json")
	assert.NotEmpty(t, d.Title)
	assert.NotEmpty(t, d.UID)
	var vars []string
	for _, v := range d.Templating.List {
		vars = append(vars, v.Name)
		if q, ok := v.Query.(map[string]any); ok {
			checkExpr(t, "variable "+v.Name, q["query"].(string), names)
		}
	}
	assert.ElementsMatch(t, []string{"datasource", "instance"}, vars)
	ids := map[int]bool{}
	queries := 0
	var walk func([]Panel)
	walk = func(ps []Panel) {
		for _, p := range ps {
			assert.False(t, ids[p.ID], "panel id %d twice", p.ID)
			ids[p.ID] = true
			require.NotNil(t, p.GridPos, "panel %q has no place", p.Title)
			assert.Positive(t, p.GridPos.W*p.GridPos.H, "panel %q", p.Title)
			assert.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the dashboard", p.Title)
			if p.Type != "row" {
				assert.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries++
				checkExpr(t, "panel "+p.Title, tg.Expr, names)
				rest := tg.Expr
				for _, v := range variables {
					rest = strings.ReplaceAll(rest, v, "")
				}
				assert.NotContains(t, rest, "$", "panel %q: a variable the dashboard does not define: %q", p.Title, tg.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	assert.GreaterOrEqual(t, queries, 10)
	// Each metric the exporter exports is on the dashboard.
	b, err := os.ReadFile("dashboard.json")
	require.NoError(t, err)
	for _, n := range names {
		assert.Contains(t, string(b), n+"{", "no panel shows %s", n)
	}
}
