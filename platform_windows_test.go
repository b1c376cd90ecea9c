package keepalive_test

import (
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/windows/registry"

	"github.com/keepalive-go/keepalive"
)

// TestWindowsPlatform checks that Platform reports what this Windows has,
// as the test finds by trying the options itself.
func TestWindowsPlatform(t *testing.T) {
	k := kind(t)
	t.Logf("TCP_KEEPIDLE/TCP_KEEPINTVL %v, TCP_KEEPCNT %v, TCP_MAXRT %v", k.times, k.count, k.maxRT)
	got, want := keepalive.Platform(), wantPlatform(k)
	// The unexported reasons are checked through the errors they make.
	for _, f := range []struct {
		name      string
		got, want keepalive.Support
	}{
		{"Idle", got.Idle, want.Idle},
		{"Interval", got.Interval, want.Interval},
		{"Count", got.Count, want.Count},
		{"UserTimeout", got.UserTimeout, want.UserTimeout},
		{"Off", got.Off, want.Off},
	} {
		g, w := f.got, f.want
		assert.Equal(t, []any{w.Option, w.Set, w.Get, w.Unit, w.Min, w.Max}, []any{g.Option, g.Set, g.Get, g.Unit, g.Min, g.Max}, f.name)
	}
	assert.Equal(t, want.SystemDefaults, got.SystemDefaults, "SystemDefaults")
	assert.Equal(t, want.AcceptInherits, got.AcceptInherits, "AcceptInherits")
}

// TestWindowsValidate checks Validate against this Windows' limits: whole
// seconds, 32767 s at most for Idle and Interval on every Windows, 255
// probes, and the fields this Windows cannot set refused as unsupported.
func TestWindowsValidate(t *testing.T) {
	k := kind(t)
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

// TestWindowsSystemDefaults checks SystemDefaults against the registry
// values KeepAliveTime and KeepAliveInterval, read here, or Windows'
// documented defaults (2 h, 1 s) where they are absent, as in a new Wine
// prefix, and the fixed 10 probes.
func TestWindowsSystemDefaults(t *testing.T) {
	want := windowsDefaults
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Services\Tcpip\Parameters`, registry.QUERY_VALUE)
	if err == nil {
		t.Cleanup(func() { k.Close() })
		for _, v := range []struct {
			name string
			d    *time.Duration
		}{{"KeepAliveTime", &want.Idle}, {"KeepAliveInterval", &want.Interval}} {
			ms, _, err := k.GetIntegerValue(v.name)
			if errors.Is(err, registry.ErrNotExist) {
				continue
			}
			require.NoError(t, err, v.name)
			t.Logf("the registry sets %s %d ms", v.name, ms)
			*v.d = time.Duration(ms) * time.Millisecond
		}
	} else {
		require.ErrorIs(t, err, registry.ErrNotExist)
	}
	got, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	assert.Equal(t, want, got)
	assert.Equal(t, want.Idle+10*want.Interval, keepalive.Config{}.DetectionTime(got), "DetectionTime of the zero Config")
}
