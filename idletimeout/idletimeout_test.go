package idletimeout_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/idletimeout"
)

// TestFindBadInput checks that bad options and addresses fail at once,
// before any connection, with an error that names them.
func TestFindBadInput(t *testing.T) {
	for _, tt := range []struct {
		name    string
		address string
		o       idletimeout.Options
		field   string // of the *OptionError, if one
		want    string
	}{
		{"no port", "192.0.2.1", idletimeout.Options{}, "", `keepalive: address "192.0.2.1" is not host:port: address 192.0.2.1: missing port in address`},
		{"empty port", "192.0.2.1:", idletimeout.Options{}, "", `keepalive: address "192.0.2.1:" has no port`},
		{"no host", ":80", idletimeout.Options{}, "", `keepalive: address ":80" has no host`},
		{"Max under 2s", "192.0.2.1:80", idletimeout.Options{Max: time.Second}, "Max", "keepalive: Max 1s is out of range 2s..32767s"},
		{"Max fraction", "192.0.2.1:80", idletimeout.Options{Max: 2500 * time.Millisecond}, "Max", "keepalive: Max 2.5s is not a whole number of seconds"},
		{"Max too long", "192.0.2.1:80", idletimeout.Options{Max: 10 * time.Hour}, "Max", "keepalive: Max 10h0m0s is out of range 2s..32767s"},
		{"Interval fraction", "192.0.2.1:80", idletimeout.Options{Interval: 500 * time.Millisecond}, "Interval", "keepalive: Interval 500ms is not a whole number of seconds"},
		{"Count", "192.0.2.1:80", idletimeout.Options{Count: 128}, "Count", "keepalive: Count 128 is out of range 1..127"},
		{"Flows", "192.0.2.1:80", idletimeout.Options{Flows: 3}, "Flows", "keepalive: Flows 3 is below 4: each pass needs 2 reserves and 2 flows to test"},
		{"DialTimeout", "192.0.2.1:80", idletimeout.Options{DialTimeout: -time.Second}, "DialTimeout", "keepalive: DialTimeout -1s is negative"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dialed := false
			tt.o.Dial = func(context.Context, string, string) (net.Conn, error) {
				dialed = true
				return nil, errors.New("dialed")
			}
			start := time.Now()
			_, err := idletimeout.Find(context.Background(), tt.address, tt.o)
			require.Error(t, err)
			assert.Equal(t, tt.want, err.Error())
			assert.False(t, dialed, "dialed despite bad input")
			assert.Less(t, time.Since(start), time.Second)
			var oe *idletimeout.OptionError
			if tt.field != "" && assert.ErrorAs(t, err, &oe) {
				assert.Equal(t, tt.field, oe.Field)
			}
			if tt.field != "" {
				_, _, perr := idletimeout.Plan(tt.o)
				assert.Equal(t, err, perr, "Plan's error")
			}
		})
	}
}

func TestCause(t *testing.T) {
	for c, want := range map[idletimeout.Cause]string{
		idletimeout.CauseNone:        "none",
		idletimeout.CauseDrop:        "drop",
		idletimeout.CauseReset:       "reset",
		idletimeout.CauseServerClose: "server-close",
	} {
		assert.Equal(t, want, c.String())
		b, err := c.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, want, string(b))
	}
	assert.Equal(t, "Cause(9)", idletimeout.Cause(9).String())
	_, err := idletimeout.Cause(9).MarshalText()
	assert.Error(t, err)
}

func TestEnd(t *testing.T) {
	for e, want := range map[idletimeout.End]string{
		idletimeout.EndNone:       "none",
		idletimeout.EndUnanswered: "unanswered",
		idletimeout.EndProbeReset: "probe-reset",
		idletimeout.EndReset:      "reset",
		idletimeout.EndFIN:        "fin",
	} {
		assert.Equal(t, want, e.String())
		b, err := e.MarshalText()
		require.NoError(t, err)
		assert.Equal(t, want, string(b))
	}
	assert.Equal(t, "End(9)", idletimeout.End(9).String())
	_, err := idletimeout.End(-1).MarshalText()
	assert.Error(t, err)
}

func TestResultSuggest(t *testing.T) {
	r := idletimeout.Result{Survived: 345 * time.Second, Died: 351 * time.Second, Cause: idletimeout.CauseDrop}
	c, err := r.Suggest(2 * time.Minute)
	require.NoError(t, err)
	assert.Equal(t, "idle=60s,interval=20s,count=3,user-timeout=120s", c.String())
	_, err = idletimeout.Result{Survived: 2 * time.Second}.Suggest(2 * time.Minute)
	assert.ErrorContains(t, err, "keepalive: idle timeout 2s is too short")
}
