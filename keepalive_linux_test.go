package keepalive_test

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// Linux's exact messages and limits: Idle and Interval whole seconds from 1
// to 32767, Count 1 to 127, UserTimeout milliseconds up to 2^31-1, and
// Linux's rule that a user timeout ends idle probing. keepalive_test.go
// checks the same APIs on every platform from Platform.

// linuxDefaults are Linux's usual sysctl values, a fixed stand-in for
// keepalive.SystemDefaults where the host's values do not matter.
var linuxDefaults = keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}

const maxUserTimeout = math.MaxInt32 * time.Millisecond

// countPastInt32 is a Count beyond any 32-bit int, a variable so that the
// tests build where int has 32 bits.
var countPastInt32 int64 = math.MaxInt32 + 1

func TestConfigValidateLinux(t *testing.T) {
	tests := []struct {
		name string
		c    keepalive.Config
		want string // the error text, empty for a valid Config
	}{
		{"zero", keepalive.Config{}, ""},
		{"all set", keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 4, UserTimeout: 50 * time.Second}, ""},
		{"minimum", keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1, UserTimeout: time.Millisecond}, ""},
		{"maximum", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127, UserTimeout: maxUserTimeout}, ""},
		{"UserTimeout whole seconds", keepalive.Config{UserTimeout: 90 * time.Second}, ""},
		{"UserTimeout odd milliseconds", keepalive.Config{UserTimeout: 1234 * time.Millisecond}, ""},

		{"Idle negative", keepalive.Config{Idle: -time.Second}, "keepalive: Idle -1s is out of range 1s..32767s"},
		{"Idle one nanosecond below zero", keepalive.Config{Idle: -1}, "keepalive: Idle -0.000000001s is out of range 1s..32767s"},
		{"Idle past the limit", keepalive.Config{Idle: 32768 * time.Second}, "keepalive: Idle 32768s is out of range 1s..32767s"},
		{"Idle a nanosecond past the limit", keepalive.Config{Idle: 32767*time.Second + 1}, "keepalive: Idle 32767.000000001s is out of range 1s..32767s"},
		{"Idle fractional", keepalive.Config{Idle: 1500 * time.Millisecond}, "keepalive: Idle 1.5s is not a whole number of seconds"},
		{"Idle below a second", keepalive.Config{Idle: 999 * time.Millisecond}, "keepalive: Idle 0.999s is out of range 1s..32767s"},
		{"Idle one nanosecond", keepalive.Config{Idle: 1}, "keepalive: Idle 0.000000001s is out of range 1s..32767s"},

		{"Interval negative", keepalive.Config{Interval: -5 * time.Second}, "keepalive: Interval -5s is out of range 1s..32767s"},
		{"Interval past the limit", keepalive.Config{Interval: 32768 * time.Second}, "keepalive: Interval 32768s is out of range 1s..32767s"},
		{"Interval fractional", keepalive.Config{Interval: 2*time.Second + time.Millisecond}, "keepalive: Interval 2.001s is not a whole number of seconds"},

		{"Count negative", keepalive.Config{Count: -1}, "keepalive: Count -1 is out of range 1..127"},
		{"Count past the limit", keepalive.Config{Count: 128}, "keepalive: Count 128 is out of range 1..127"},

		{"UserTimeout negative", keepalive.Config{UserTimeout: -time.Millisecond}, "keepalive: UserTimeout -1ms is out of range 1ms..2147483647ms"},
		{"UserTimeout past the limit", keepalive.Config{UserTimeout: maxUserTimeout + time.Millisecond}, "keepalive: UserTimeout 2147483648ms is out of range 1ms..2147483647ms"},
		{"UserTimeout fractional", keepalive.Config{UserTimeout: 1500 * time.Microsecond}, "keepalive: UserTimeout 1.5ms is not a whole number of milliseconds"},
		{"UserTimeout one microsecond", keepalive.Config{UserTimeout: time.Microsecond}, "keepalive: UserTimeout 0.001ms is out of range 1ms..2147483647ms"},

		{"every bad field is named", keepalive.Config{Idle: -time.Second, Interval: -time.Second, Count: -1, UserTimeout: -1}, "keepalive: Idle -1s is out of range 1s..32767s; Interval -1s is out of range 1s..32767s; Count -1 is out of range 1..127; UserTimeout -0.000001ms is out of range 1ms..2147483647ms"},
		{"Interval and Count", keepalive.Config{Interval: time.Nanosecond, Count: 128}, "keepalive: Interval 0.000000001s is out of range 1s..32767s; Count 128 is out of range 1..127"},
		{"Count and UserTimeout", keepalive.Config{Count: 200, UserTimeout: -1}, "keepalive: Count 200 is out of range 1..127; UserTimeout -0.000001ms is out of range 1ms..2147483647ms"},
		{"fraction and range", keepalive.Config{Idle: 1500 * time.Millisecond, UserTimeout: 30 * 24 * time.Hour}, "keepalive: Idle 1.5s is not a whole number of seconds; UserTimeout 2592000000ms is out of range 1ms..2147483647ms"},
		{"Off with values", keepalive.Config{Off: true, Idle: 30 * time.Second, UserTimeout: time.Minute}, ""},
		{"Off with a bad value", keepalive.Config{Off: true, Count: 128}, "keepalive: Count 128 is out of range 1..127"},
	}
	if strconv.IntSize == 64 {
		// A Count no 32-bit int holds.
		tests = append(tests, struct {
			name string
			c    keepalive.Config
			want string
		}{"Count far past the limit", keepalive.Config{Count: int(countPastInt32)}, "keepalive: Count 2147483648 is out of range 1..127"})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want != "" {
				assert.EqualError(t, err, tt.want)
				assert.NotErrorIs(t, err, errors.ErrUnsupported)
				return
			}
			assert.NoError(t, err)
		})
	}
}

func TestFromKeepAliveConfigLinux(t *testing.T) {
	tests := []struct {
		name    string
		k       net.KeepAliveConfig
		want    keepalive.Config
		wantErr string
	}{
		{"zero means Go's defaults", net.KeepAliveConfig{Enable: true}, keepalive.Config{Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}, ""},
		{"negative means the current value", net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -time.Hour, Count: -7}, keepalive.Config{}, ""},
		{"explicit values", net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}, keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}, ""},
		{"mixed", net.KeepAliveConfig{Enable: true, Idle: 45 * time.Second, Interval: -1}, keepalive.Config{Idle: 45 * time.Second, Count: 9}, ""},
		{"limits", net.KeepAliveConfig{Enable: true, Idle: 32767 * time.Second, Interval: time.Second, Count: 127}, keepalive.Config{Idle: 32767 * time.Second, Interval: time.Second, Count: 127}, ""},

		{"Enable false is Off", net.KeepAliveConfig{Idle: 30 * time.Second}, keepalive.Config{Off: true, Idle: 30 * time.Second, Interval: 15 * time.Second, Count: 9}, ""},
		{"Enable false, the rest left", net.KeepAliveConfig{Idle: -1, Interval: -1, Count: -1}, keepalive.Config{Off: true}, ""},
		{"fractional second is refused, not rounded", net.KeepAliveConfig{Enable: true, Idle: 1500 * time.Millisecond}, keepalive.Config{}, "keepalive: Idle 1.5s is not a whole number of seconds"},
		{"Interval past the limit", net.KeepAliveConfig{Enable: true, Interval: 32768 * time.Second}, keepalive.Config{}, "keepalive: Interval 32768s is out of range 1s..32767s"},
		{"Count past the limit", net.KeepAliveConfig{Enable: true, Count: 128}, keepalive.Config{}, "keepalive: Count 128 is out of range 1..127"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := keepalive.FromKeepAliveConfig(tt.k)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestKeepAliveConfigRoundTripLinux checks that the two conversions undo each
// other: a Config survives the trip through net.KeepAliveConfig (less
// UserTimeout), and a net.KeepAliveConfig keeps its effect.
func TestKeepAliveConfigRoundTripLinux(t *testing.T) {
	configs := []keepalive.Config{
		{},
		{Idle: 30 * time.Second},
		{Interval: 5 * time.Second, Count: 3},
		{Idle: time.Second, Interval: time.Second, Count: 1},
		{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127},
		{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 45 * time.Second},
	}
	for _, c := range configs {
		t.Run("Config "+configName(c), func(t *testing.T) {
			got, err := keepalive.FromKeepAliveConfig(c.KeepAliveConfig())
			require.NoError(t, err)
			want := c
			want.UserTimeout = 0
			assert.Equal(t, want, got)
		})
	}

	kcs := []net.KeepAliveConfig{
		{Enable: true},
		{Enable: true, Idle: -1, Interval: -1, Count: -1},
		{Enable: true, Idle: 20 * time.Second, Interval: -1, Count: 4},
		{Enable: true, Idle: 32767 * time.Second, Interval: time.Second, Count: 127},
	}
	for _, k := range kcs {
		t.Run(fmt.Sprintf("KeepAliveConfig %+v", k), func(t *testing.T) {
			c, err := keepalive.FromKeepAliveConfig(k)
			require.NoError(t, err)
			assert.Equal(t, goEffect(k), goEffect(c.KeepAliveConfig()))
		})
	}
}

func TestConfigWithUserTimeoutLinux(t *testing.T) {
	tests := []struct {
		name    string
		c       keepalive.Config
		want    keepalive.Config
		wantErr string
	}{
		{"all set", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}, keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 110 * time.Second}, ""},
		{"Count 1", keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1}, keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1, UserTimeout: 2 * time.Second}, ""},
		{"replaces a UserTimeout", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: time.Second}, keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 110 * time.Second}, ""},
		{"limits overflow UserTimeout", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}, keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127, UserTimeout: 128 * 32767 * time.Second}, "keepalive: UserTimeout 4194176000ms is out of range 1ms..2147483647ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.c.WithUserTimeout()
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			if tt.wantErr != "" {
				assert.EqualError(t, got.Validate(), tt.wantErr)
				return
			}
			// The pairing changes nothing for an idle connection: it is
			// declared dead when it would have been without a UserTimeout.
			without := tt.c
			without.UserTimeout = 0
			assert.Equal(t, detectionTime(t, without, linuxDefaults), detectionTime(t, got, linuxDefaults))
		})
	}
}
