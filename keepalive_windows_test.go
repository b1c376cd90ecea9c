package keepalive_test

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keepalive-go/keepalive"
)

// TestWindowsValidate checks Validate against this Windows' limits: whole
// seconds, 32767 s at most for Idle and Interval on every Windows, 255
// probes, and the fields this Windows cannot set refused as unsupported.
func TestWindowsValidate(t *testing.T) {
	k, w := thisHost(t), wantPlatform(t)
	whyNoCount, whyNoMaxRT := w.Count.why, w.UserTimeout.why
	// ifHas returns text where this Windows has the field's option (has),
	// else why the field is not supported.
	ifHas := func(has bool, text, field, why string) string {
		if has {
			return text
		}
		return field + " is not supported on windows/" + runtime.GOARCH + ": " + why
	}
	tests := []struct {
		name string
		c    keepalive.Config
		want []string // the FieldErrors' texts, none for a valid Config
	}{
		{"zero", keepalive.Config{}, nil},
		{"minimum", keepalive.Config{Idle: time.Second, Interval: time.Second}, nil},
		{"maximum", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second}, nil},
		{"off", keepalive.Config{Off: true, Idle: time.Minute}, nil},
		{"Idle past the limit", keepalive.Config{Idle: 32768 * time.Second}, []string{"Idle 32768s is out of range 1s..32767s"}},
		{"Idle fractional", keepalive.Config{Idle: 1500 * time.Millisecond}, []string{"Idle 1.5s is not a whole number of seconds"}},
		{"Idle below a second", keepalive.Config{Idle: 999 * time.Millisecond}, []string{"Idle 0.999s is out of range 1s..32767s"}},
		{"Interval negative", keepalive.Config{Interval: -time.Second}, []string{"Interval -1s is out of range 1s..32767s"}},
		{"Interval past the limit", keepalive.Config{Interval: 32768 * time.Second}, []string{"Interval 32768s is out of range 1s..32767s"}},
		{"Count", keepalive.Config{Count: 9}, []string{ifHas(k.count, "", "Count", whyNoCount)}},
		{"Count 255", keepalive.Config{Count: 255}, []string{ifHas(k.count, "", "Count", whyNoCount)}},
		{"Count past the limit", keepalive.Config{Count: 256}, []string{ifHas(k.count, "Count 256 is out of range 1..255", "Count", whyNoCount)}},
		{"UserTimeout", keepalive.Config{UserTimeout: 30 * time.Second}, []string{ifHas(k.maxRT, "", "UserTimeout", whyNoMaxRT)}},
		{"UserTimeout maximum", keepalive.Config{UserTimeout: 2147483 * time.Second}, []string{ifHas(k.maxRT, "", "UserTimeout", whyNoMaxRT)}},
		{"UserTimeout past the limit", keepalive.Config{UserTimeout: 2147484 * time.Second}, []string{ifHas(k.maxRT, "UserTimeout 2147484s is out of range 1s..2147483s", "UserTimeout", whyNoMaxRT)}},
		{"UserTimeout milliseconds", keepalive.Config{UserTimeout: 1500 * time.Millisecond}, []string{ifHas(k.maxRT, "UserTimeout 1.5s is not a whole number of seconds", "UserTimeout", whyNoMaxRT)}},
		{"every field", keepalive.Config{Idle: 1500 * time.Millisecond, Count: 3, UserTimeout: time.Minute}, []string{
			"Idle 1.5s is not a whole number of seconds",
			ifHas(k.count, "", "Count", whyNoCount),
			ifHas(k.maxRT, "", "UserTimeout", whyNoMaxRT),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := slices.DeleteFunc(tt.want, func(s string) bool { return s == "" })
			err := tt.c.Validate()
			if len(want) == 0 {
				assert.NoError(t, err)
				return
			}
			assert.EqualError(t, err, "keepalive: "+strings.Join(want, "; "))
			if err != nil {
				assert.NotContains(t, err.Error(), "10042", "a bare WSAENOPROTOOPT")
			}
		})
	}
}
