package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestConfigFlags checks how -config and the per-field flags combine: the
// fields given win, a field's own flag over -config, and the rest keep
// the defaults, the user timeout idle + interval × count.
func TestConfigFlags(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	const s = time.Second
	for _, tt := range []struct {
		args []string
		want keepalive.Config
	}{
		{nil, keepalive.Config{Idle: 60 * s, Interval: 10 * s, Count: 5, UserTimeout: 110 * s}},
		// The case of issue 9: the interval stays at its default 10s.
		{[]string{"-config", "idle=30s,count=4"}, keepalive.Config{Idle: 30 * s, Interval: 10 * s, Count: 4, UserTimeout: 70 * s}},
		{[]string{"-config", "idle=30s,count=4", "-interval", "7s"}, keepalive.Config{Idle: 30 * s, Interval: 7 * s, Count: 4, UserTimeout: 58 * s}},
		{[]string{"-interval", "7s", "-config", "idle=30s,count=4"}, keepalive.Config{Idle: 30 * s, Interval: 7 * s, Count: 4, UserTimeout: 58 * s}},
		{[]string{"-config", "idle=30s,count=4", "-count", "2"}, keepalive.Config{Idle: 30 * s, Interval: 10 * s, Count: 2, UserTimeout: 50 * s}},
		{[]string{"-config", " idle = 30s , count=4 "}, keepalive.Config{Idle: 30 * s, Interval: 10 * s, Count: 4, UserTimeout: 70 * s}},
		{[]string{"-config", "user-timeout=30s"}, keepalive.Config{Idle: 60 * s, Interval: 10 * s, Count: 5, UserTimeout: 30 * s}},
		{[]string{"-config", "user-timeout=30s", "-user-timeout", "20s"}, keepalive.Config{Idle: 60 * s, Interval: 10 * s, Count: 5, UserTimeout: 20 * s}},
		{[]string{"-config", "interval=5s,user-timeout=0"}, keepalive.Config{Idle: 60 * s, Interval: 5 * s, Count: 5}},
		{[]string{"-user-timeout", "0"}, keepalive.Config{Idle: 60 * s, Interval: 10 * s, Count: 5}},
		{[]string{"-user-timeout", "1500ms"}, keepalive.Config{Idle: 60 * s, Interval: 10 * s, Count: 5, UserTimeout: 1500 * time.Millisecond}},
		// 0 is the system default, which the default user timeout counts.
		{[]string{"-count", "0"}, keepalive.Config{Idle: 60 * s, Interval: 10 * s, UserTimeout: 60*s + 10*s*time.Duration(sys.Count)}},
		{[]string{"-config", "idle=0"}, keepalive.Config{Interval: 10 * s, Count: 5, UserTimeout: sys.Idle + 50*s}},
		// The empty text is the zero Config: every field given, zero.
		{[]string{"-config", ""}, keepalive.Config{}},
		{[]string{"-config", "", "-count", "3"}, keepalive.Config{Count: 3}},
		// A repeated -config: the last one counts.
		{[]string{"-config", "count=3", "-config", "idle=20s"}, keepalive.Config{Idle: 20 * s, Interval: 10 * s, Count: 5, UserTimeout: 70 * s}},
		{[]string{"-idle", "1m", "-idle", "2m"}, keepalive.Config{Idle: 120 * s, Interval: 10 * s, Count: 5, UserTimeout: 170 * s}},
		// Off: keepalive off, the other fields kept for when it is on again.
		{[]string{"-off"}, keepalive.Config{Off: true, Idle: 60 * s, Interval: 10 * s, Count: 5, UserTimeout: 110 * s}},
		{[]string{"-config", "off,user-timeout=30s"}, keepalive.Config{Off: true, Idle: 60 * s, Interval: 10 * s, Count: 5, UserTimeout: 30 * s}},
		{[]string{"-config", "off", "-count", "2"}, keepalive.Config{Off: true, Idle: 60 * s, Interval: 10 * s, Count: 2, UserTimeout: 80 * s}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			cf := addConfigFlags(fs)
			require.NoError(t, fs.Parse(tt.args))
			c, err := cf.config()
			require.NoError(t, err)
			assert.Equal(t, tt.want, c)
		})
	}
}

// TestConfigFlagsIssue9 checks the worst case of the command line in issue
// 9: dial -config idle=30s,count=4 took the system's interval (5m30s with
// 75s); now the interval keeps its advertised default.
func TestConfigFlagsIssue9(t *testing.T) {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	cf := addConfigFlags(fs)
	require.NoError(t, fs.Parse([]string{"-config", "idle=30s,count=4"}))
	c, err := cf.config()
	require.NoError(t, err)
	dt, err := c.DetectionTime()
	require.NoError(t, err)
	assert.Equal(t, 70*time.Second, dt)
	assert.Equal(t, "10s", fs.Lookup("interval").DefValue)
}

// TestDefaultUserTimeoutTooLong checks the one Config error that no single
// flag causes: a default user timeout beyond the kernel's limit.
func TestDefaultUserTimeoutTooLong(t *testing.T) {
	r := runArgs(t.Context(), "-interval", "32767s", "-count", "127")
	ut := 60*time.Second + 127*32767*time.Second
	assert.Equal(t, exitUsage, r.code)
	assert.Empty(t, r.stdout)
	assert.Equal(t, "keepalive: the default user timeout, idle + interval × count = "+ut.String()+", cannot be set: "+
		lib(keepalive.Config{UserTimeout: ut}.Validate())+"; give -user-timeout\n"+usageTail["keepalive"], r.stderr)
	r = runArgs(t.Context(), "-interval", "32767s", "-count", "127", "-user-timeout", "0")
	assert.Equal(t, exitOK, r.code, r.stderr)
}
