package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

func TestSysctl(t *testing.T) {
	const s = time.Second
	for _, tt := range []struct {
		args []string
		c    keepalive.Config
	}{
		{nil, keepalive.Config{Idle: 60 * s, Interval: 10 * s, Count: 5, UserTimeout: 110 * s}},
		{[]string{"-config", "idle=300s,interval=30s,count=4,user-timeout=0"}, keepalive.Config{Idle: 300 * s, Interval: 30 * s, Count: 4}},
		{[]string{"-config", "count=4", "-idle", "5m"}, keepalive.Config{Idle: 300 * s, Interval: 10 * s, Count: 4, UserTimeout: 340 * s}},
		{[]string{"-config", ""}, keepalive.Config{}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runArgs(context.Background(), append([]string{"sysctl"}, tt.args...)...)
			assert.Equal(t, exitOK, r.code)
			assert.Empty(t, r.stderr)
			want, err := tt.c.SysctlConf()
			require.NoError(t, err)
			assert.Equal(t, want, r.stdout)
		})
	}
	r := runArgs(context.Background(), "sysctl", "-config", "idle=60s,interval=5s,count=3,user-timeout=75s")
	assert.Equal(t, `# TCP keepalive: idle=60s,interval=5s,count=3,user-timeout=75s
net.ipv4.tcp_keepalive_time = 60
net.ipv4.tcp_keepalive_intvl = 5
net.ipv4.tcp_keepalive_probes = 3
# UserTimeout 75s has no sysctl: TCP_USER_TIMEOUT is set on each socket only
`, r.stdout)
}
