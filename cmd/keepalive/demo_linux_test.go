package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestDemo checks that the demo, the command run with no command, reads
// back on both ends the Config it was given, the system's value for each
// zero field.
func TestDemo(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	rt, err := keepalive.RetransmitTimeout()
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		args []string
		want keepalive.Config // read back on both ends
		out  []string         // in stdout, spaces squeezed
	}{
		{"no arguments", nil, keepalive.Config{Idle: time.Minute, Interval: 10 * time.Second, Count: 5, UserTimeout: 110 * time.Second}, []string{
			"requested: idle 1m0s, interval 10s, count 5, user timeout 1m50s\n",
			`as text: "idle=60s,interval=10s,count=5,user-timeout=110s"`,
			"with this config: 1m50s: idle 1m0s + 5 unanswered probes × interval 10s",
			"with this config: 1m50s (the user timeout)",
		}},
		{"config and field flags", []string{"-config", "idle=30s,count=4", "-interval", "7s", "-user-timeout", "0"}, keepalive.Config{Idle: 30 * time.Second, Interval: 7 * time.Second, Count: 4}, []string{
			"requested: idle 30s, interval 7s, count 4, no user timeout\n",
			`as text: "idle=30s,interval=7s,count=4"`,
			"with this config: 58s: idle 30s + 4 unanswered probes × interval 7s\n",
			fmt.Sprintf("with this config: at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)", rt),
		}},
		{"zero Config", []string{"-config", ""}, sys, []string{
			fmt.Sprintf("requested: idle system default (%v), interval system default (%v), count system default (%d), no user timeout\n", sys.Idle, sys.Interval, sys.Count),
			`as text: "" (the zero Config)`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runArgs(context.Background(), tt.args...)
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, exitOK, r.code)
			assert.Empty(t, r.stderr)
			out := squeeze(r.stdout)
			for _, w := range tt.out {
				assert.Contains(t, out, w)
			}
			for _, end := range []string{"dialed", "accepted"} {
				m := regexp.MustCompile(`(?m)^` + end + ` 127\.0\.0\.1:\d+ (on|off) (\S+) (\S+) (\d+) (\S+)$`).FindStringSubmatch(out)
				require.NotNil(t, m, "no row for the %s socket", end)
				assert.Equal(t, "on", m[1], end)
				got := keepalive.Config{Idle: dur(t, m[2]), Interval: dur(t, m[3]), UserTimeout: 0}
				got.Count, _ = strconv.Atoi(m[4])
				if m[5] != "none" {
					got.UserTimeout = dur(t, m[5])
				}
				assert.Equal(t, tt.want, got, end)
			}
			assert.Contains(t, out, fmt.Sprintf("system defaults: idle %v, interval %v, count %d, no user timeout (sysctl net.ipv4.tcp_keepalive_*)\n", sys.Idle, sys.Interval, sys.Count))
			sysDetect, err := sys.DetectionTime()
			require.NoError(t, err)
			assert.Contains(t, out, "with system defaults: "+sysDetect.String())
			assert.Contains(t, out, fmt.Sprintf("with system defaults: at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)", rt))
		})
	}
}

func dur(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	require.NoError(t, err)
	return d
}

// TestDemoFast checks that the demo, the command's default, stays fast:
// one loopback connection and a few reads of /proc.
func TestDemoFast(t *testing.T) {
	const bound = 500 * time.Millisecond
	var worst time.Duration
	for range 5 {
		start := time.Now()
		r := runArgs(context.Background())
		d := time.Since(start)
		require.Equal(t, exitOK, r.code, r.stderr)
		worst = max(worst, d)
	}
	t.Logf("slowest of 5 runs: %v (bound %v)", worst, bound)
	assert.Less(t, worst, bound)
}
