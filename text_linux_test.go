package keepalive_test

import (
	"encoding/json"
	"flag"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestParseConfigErrorsLinux checks Linux's messages for values that parse
// but the kernel cannot hold, through ParseConfig, JSON and a flag.
func TestParseConfigErrorsLinux(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want string
	}{
		{"count=128", "keepalive: Count 128 is out of range 1..127"},
		{"idle=1.5s", "keepalive: Idle 1.5s is not a whole number of seconds"},
		{"interval=-5s", "keepalive: Interval -5s is out of range 1s..32767s"},
		{"idle=32768s", "keepalive: Idle 32768s is out of range 1s..32767s"},
		{"user-timeout=1.5ms", "keepalive: UserTimeout 1.5ms is not a whole number of milliseconds"},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := keepalive.ParseConfig(tt.in)
			assert.EqualError(t, err, tt.want)
			assert.Equal(t, keepalive.Config{}, got, "the Config returned with an error")
		})
	}

	t.Run("JSON", func(t *testing.T) {
		var s struct {
			Keepalive keepalive.Config `json:"keepalive"`
		}
		err := json.Unmarshal([]byte(`{"keepalive":"count=200"}`), &s)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "keepalive: Count 200 is out of range 1..127")
	})

	t.Run("flag", func(t *testing.T) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var c keepalive.Config
		fs.TextVar(&c, "keepalive", keepalive.Config{Idle: time.Minute}, "TCP keepalive")
		err := fs.Parse([]string{"-keepalive", "idle=0.5s"})
		assert.EqualError(t, err, `invalid value "idle=0.5s" for flag -keepalive: keepalive: Idle 0.5s is out of range 1s..32767s`)
	})
}
