package keepalive_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestParsePostgresLinux checks the options at Linux's limits, which libpq
// passes to setsockopt as they are.
func TestParsePostgresLinux(t *testing.T) {
	c, rest, err := keepalive.ParsePostgres("keepalives_idle=32767 keepalives_interval=32767 keepalives_count=127 tcp_user_timeout=2147483647")
	require.NoError(t, err)
	assert.Equal(t, keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127, UserTimeout: 2147483647 * time.Millisecond}, c)
	assert.Empty(t, rest)
}

// TestParsePostgresErrorsLinux checks Linux's messages for values libpq
// accepts but the kernel refuses when libpq passes them on.
func TestParsePostgresErrorsLinux(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the error text
	}{
		{"idle 0", "keepalives_idle=0",
			`keepalive: invalid value "0" for connection option "keepalives_idle": out of range 1..32767 seconds (libpq passes 0 to setsockopt, which fails)`},
		{"idle negative", "keepalives_idle=-1",
			`keepalive: invalid value "-1" for connection option "keepalives_idle": out of range 1..32767 seconds (libpq passes 0 to setsockopt, which fails)`},
		{"idle too large", "keepalives_idle=32768",
			`keepalive: invalid value "32768" for connection option "keepalives_idle": out of range 1..32767 seconds (libpq passes 32768 to setsockopt, which fails)`},
		{"interval 0", "postgres://db?keepalives_interval=0",
			`keepalive: invalid value "0" for connection option "keepalives_interval": out of range 1..32767 seconds (libpq passes 0 to setsockopt, which fails)`},
		{"count too large", "keepalives_count=128",
			`keepalive: invalid value "128" for connection option "keepalives_count": out of range 1..127 probes (libpq passes 128 to setsockopt, which fails)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rest, err := keepalive.ParsePostgres(tt.in)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
			assert.Zero(t, c, "Config on error")
			assert.Empty(t, rest, "string on error")
		})
	}
}
