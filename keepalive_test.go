package keepalive_test

import (
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// linuxDefaults are Linux's usual sysctl values, a fixed stand-in for
// keepalive.SystemDefaults where the host's values do not matter.
var linuxDefaults = keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}

const maxUserTimeout = math.MaxInt32 * time.Millisecond

func TestConfigValidate(t *testing.T) {
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
		{"Count far past the limit", keepalive.Config{Count: math.MaxInt32 + 1}, "keepalive: Count 2147483648 is out of range 1..127"},

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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want != "" {
				assert.EqualError(t, err, tt.want)
				assert.NotErrorIs(t, err, errors.ErrUnsupported)
				return
			}
			if runtime.GOOS == "linux" {
				assert.NoError(t, err)
				return
			}
			// Off Linux a valid Config may still hold a field the
			// platform cannot set; that must say so, never pass.
			if err != nil {
				assert.ErrorIs(t, err, errors.ErrUnsupported)
				assert.ErrorContains(t, err, runtime.GOOS)
			}
		})
	}
}

func TestConfigKeepAliveConfig(t *testing.T) {
	tests := []struct {
		name string
		c    keepalive.Config
		want net.KeepAliveConfig
	}{
		{"zero keeps the system values", keepalive.Config{}, net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}},
		{"only Idle", keepalive.Config{Idle: 30 * time.Second}, net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: -1, Count: -1}},
		{"only Interval and Count", keepalive.Config{Interval: 5 * time.Second, Count: 3}, net.KeepAliveConfig{Enable: true, Idle: -1, Interval: 5 * time.Second, Count: 3}},
		{"all set", keepalive.Config{Idle: time.Second, Interval: 32767 * time.Second, Count: 127}, net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: 32767 * time.Second, Count: 127}},
		{"UserTimeout is not carried", keepalive.Config{Idle: 10 * time.Second, UserTimeout: time.Minute}, net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: -1, Count: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.c.KeepAliveConfig())
		})
	}
}

func TestFromKeepAliveConfig(t *testing.T) {
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

// TestKeepAliveConfigRoundTrip checks that the two conversions undo each
// other: a Config survives the trip through net.KeepAliveConfig (less
// UserTimeout), and a net.KeepAliveConfig keeps its effect.
func TestKeepAliveConfigRoundTrip(t *testing.T) {
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

// goEffect returns what the standard library does with k: zero is Go's
// default, negative leaves the value (-1).
func goEffect(k net.KeepAliveConfig) net.KeepAliveConfig {
	fix := func(d, def time.Duration) time.Duration {
		switch {
		case d == 0:
			return def
		case d < 0:
			return -1
		}
		return d
	}
	k.Idle = fix(k.Idle, 15*time.Second)
	k.Interval = fix(k.Interval, 15*time.Second)
	k.Count = int(fix(time.Duration(k.Count), 9))
	return k
}

func TestConfigDetectionTime(t *testing.T) {
	tests := []struct {
		name string
		c    keepalive.Config
		sys  keepalive.Config
		want time.Duration
	}{
		{"zero takes the system values", keepalive.Config{}, linuxDefaults, 7200*time.Second + 9*75*time.Second},
		{"only Idle", keepalive.Config{Idle: 60 * time.Second}, linuxDefaults, 60*time.Second + 9*75*time.Second},
		{"only Interval and Count", keepalive.Config{Interval: 10 * time.Second, Count: 3}, linuxDefaults, 7230 * time.Second},
		{"all set", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}, linuxDefaults, 110 * time.Second},
		{"Count 1", keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1}, linuxDefaults, 2 * time.Second},
		{"limits", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}, linuxDefaults, 128 * 32767 * time.Second},
		{"other system values", keepalive.Config{Idle: 30 * time.Second}, keepalive.Config{Idle: time.Hour, Interval: 20 * time.Second, Count: 4}, 110 * time.Second},

		// With a UserTimeout the connection dies at the first probe
		// timer, Idle + Interval*k with k >= 1, that finds UserTimeout
		// passed; Count no longer matters.
		{"UserTimeout on a probe", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 100 * time.Second}, linuxDefaults, 100 * time.Second},
		{"UserTimeout between probes", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 95 * time.Second}, linuxDefaults, 100 * time.Second},
		{"UserTimeout just past a probe", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 70*time.Second + time.Millisecond}, linuxDefaults, 80 * time.Second},
		{"UserTimeout at the first probe's answer", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 70 * time.Second}, linuxDefaults, 70 * time.Second},
		{"UserTimeout below Idle needs one probe", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: time.Second}, linuxDefaults, 70 * time.Second},
		{"UserTimeout beyond Count", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 2, UserTimeout: 300 * time.Second}, linuxDefaults, 300 * time.Second},
		{"UserTimeout with system values", keepalive.Config{UserTimeout: 3 * time.Hour}, linuxDefaults, 7200*time.Second + 48*75*time.Second},
		{"UserTimeout with system values between probes", keepalive.Config{UserTimeout: 3*time.Hour + time.Second}, linuxDefaults, 7200*time.Second + 49*75*time.Second},
		{"UserTimeout from sys", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}, keepalive.Config{UserTimeout: 85 * time.Second}, 90 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.c.DetectionTime(tt.sys))
		})
	}
}

func TestConfigWithUserTimeout(t *testing.T) {
	tests := []struct {
		name    string
		c       keepalive.Config
		want    keepalive.Config
		wantErr string
	}{
		{"zero", keepalive.Config{}, keepalive.Config{UserTimeout: 7875 * time.Second}, ""},
		{"all set", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}, keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 110 * time.Second}, ""},
		{"partial keeps zero fields zero", keepalive.Config{Idle: 60 * time.Second}, keepalive.Config{Idle: 60 * time.Second, UserTimeout: 735 * time.Second}, ""},
		{"Count 1", keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1}, keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1, UserTimeout: 2 * time.Second}, ""},
		{"replaces a UserTimeout", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: time.Second}, keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 110 * time.Second}, ""},
		{"limits overflow UserTimeout", keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}, keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127, UserTimeout: 128 * 32767 * time.Second}, "keepalive: UserTimeout 4194176000ms is out of range 1ms..2147483647ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.c.WithUserTimeout(linuxDefaults)
			assert.Equal(t, tt.want, got)
			if tt.wantErr != "" {
				assert.EqualError(t, got.Validate(), tt.wantErr)
				return
			}
			// The pairing changes nothing for an idle connection: it is
			// declared dead when it would have been without a UserTimeout.
			without := tt.c
			without.UserTimeout = 0
			assert.Equal(t, without.DetectionTime(linuxDefaults), got.DetectionTime(linuxDefaults))
		})
	}
}

// netConner wraps a connection the way *tls.Conn does.
type netConner struct{ net.Conn }

func (c netConner) NetConn() net.Conn { return c.Conn }

func TestNotTCP(t *testing.T) {
	p1, p2 := net.Pipe()
	t.Cleanup(func() { p1.Close() })
	t.Cleanup(func() { p2.Close() })
	tests := []struct {
		name string
		conn net.Conn
		want string
	}{
		{"net.Pipe", p1, "keepalive: not a TCP socket: *net.pipe"},
		{"wrapping net.Pipe", netConner{p2}, "keepalive: not a TCP socket: *net.pipe inside keepalive_test.netConner"},
		{"wrapping nil", netConner{}, "keepalive: not a TCP socket: nil inside keepalive_test.netConner"},
		{"nil", nil, "keepalive: not a TCP socket: nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := keepalive.Set(tt.conn, keepalive.Config{Idle: time.Minute})
			assert.ErrorIs(t, err, keepalive.ErrNotTCP)
			assert.EqualError(t, err, tt.want)

			_, err = keepalive.Get(tt.conn)
			assert.ErrorIs(t, err, keepalive.ErrNotTCP)
			assert.EqualError(t, err, tt.want)

			err = keepalive.Disable(tt.conn)
			assert.ErrorIs(t, err, keepalive.ErrNotTCP)
			assert.EqualError(t, err, tt.want)

			// An invalid Config is reported first, whatever the conn.
			bad := keepalive.Config{Count: 128}
			assert.Equal(t, bad.Validate(), keepalive.Set(tt.conn, bad))
		})
	}
}

// rawConn is a syscall.RawConn that counts its uses and never calls f.
type rawConn struct{ calls int }

func (rc *rawConn) Control(func(fd uintptr)) error    { rc.calls++; return nil }
func (rc *rawConn) Read(func(fd uintptr) bool) error  { rc.calls++; return nil }
func (rc *rawConn) Write(func(fd uintptr) bool) error { rc.calls++; return nil }

var _ syscall.RawConn = (*rawConn)(nil)

// TestConfigControlUntouched checks that Control leaves the socket alone
// for other networks and for an invalid Config.
func TestConfigControlUntouched(t *testing.T) {
	good := keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: time.Minute}
	for _, network := range []string{"udp", "udp4", "udp6", "unix", "unixgram", "unixpacket", "ip4:icmp", "TCP", "tcp7", ""} {
		t.Run(network, func(t *testing.T) {
			rc := &rawConn{}
			assert.NoError(t, good.Control(network, "127.0.0.1:1", rc))
			assert.Zero(t, rc.calls, "RawConn used")
			assert.NoError(t, keepalive.Config{Count: 128}.Control(network, "127.0.0.1:1", rc), "a Config that is not used is not validated")
		})
	}
	bad := []keepalive.Config{
		{Idle: -time.Second},
		{Interval: 1500 * time.Millisecond},
		{Count: 128},
		{UserTimeout: maxUserTimeout + time.Millisecond},
	}
	for _, network := range []string{"tcp", "tcp4", "tcp6"} {
		for _, c := range bad {
			t.Run(network+" "+configName(c), func(t *testing.T) {
				rc := &rawConn{}
				assert.Equal(t, c.Validate(), c.Control(network, "127.0.0.1:1", rc))
				assert.Zero(t, rc.calls, "RawConn used")
			})
		}
	}
}

// configName names c in subtest names.
func configName(c keepalive.Config) string {
	if c == (keepalive.Config{}) {
		return "zero"
	}
	s := ""
	add := func(name string, v any) {
		if s != "" {
			s += ","
		}
		s += name + "=" + fmt.Sprint(v)
	}
	if c.Idle != 0 {
		add("Idle", c.Idle)
	}
	if c.Interval != 0 {
		add("Interval", c.Interval)
	}
	if c.Count != 0 {
		add("Count", c.Count)
	}
	if c.UserTimeout != 0 {
		add("UserTimeout", c.UserTimeout)
	}
	if c.Off {
		add("Off", true)
	}
	return s
}

// TestCheckSpan checks the rule that macOS, FreeBSD, NetBSD and DragonFly
// apply in Validate: Idle + Interval*Count, each zero field taken from the
// system defaults, must stay within the counter the kernel adds them in.
// The defaults are read only when the sum could exceed the limit with
// defaults within Linux's limits.
func TestCheckSpan(t *testing.T) {
	const darwinMax = math.MaxUint32 * time.Millisecond // 2^32-1 ms
	const netbsdMax = 42949672 * 500 * time.Millisecond // INT_MAX/50 slow ticks
	bsdDefaults := keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 8}
	tests := []struct {
		name    string
		c       keepalive.Config
		max     time.Duration
		sys     keepalive.Config // what the defaults read, when read
		sysErr  error
		wantSys bool   // the defaults must be read
		want    string // the error text, empty for none
	}{
		{name: "zero", max: darwinMax},
		{name: "Linux's limits", c: keepalive.Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127}, max: darwinMax},
		{name: "one field, small", c: keepalive.Config{Idle: 60 * time.Second}, max: darwinMax},
		{name: "at the limit", c: keepalive.Config{Idle: 3294967295 * time.Millisecond, Interval: 1000000 * time.Second, Count: 1}, max: darwinMax},
		{name: "a nanosecond past the limit", c: keepalive.Config{Idle: 3294967295*time.Millisecond + 1, Interval: 1000000 * time.Second, Count: 1}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 4294967.295000001s is out of range 0s..4294967.295s"},
		{name: "whole seconds at the limit", c: keepalive.Config{Idle: 1294967 * time.Second, Interval: 1000000 * time.Second, Count: 3}, max: darwinMax},
		{name: "a second past the limit", c: keepalive.Config{Idle: 1294968 * time.Second, Interval: 1000000 * time.Second, Count: 3}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 4294968s is out of range 0s..4294967.295s"},
		{name: "large Count", c: keepalive.Config{Idle: time.Second, Interval: time.Second, Count: 1 << 30}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 1073741825s is out of range 0s..4294967.295s"},
		{name: "overflows a Duration", c: keepalive.Config{Idle: 2147483 * time.Second, Interval: 2147483 * time.Second, Count: math.MaxInt32}, max: darwinMax,
			want: "keepalive: Idle+Interval*Count 2147483s+2147483s*2147483647 is out of range 0s..4294967.295s"},
		{name: "large Count, zero Interval, small default", c: keepalive.Config{Count: 50000}, max: darwinMax, sys: bsdDefaults, wantSys: true},
		{name: "large Count, zero Interval, large default", c: keepalive.Config{Count: 50000}, max: darwinMax, sys: keepalive.Config{Interval: 100 * time.Second}, wantSys: true,
			want: "keepalive: Idle+Interval*Count 5000000s is out of range 0s..4294967.295s"},
		{name: "large Interval, zero Count and Idle", c: keepalive.Config{Interval: 500000 * time.Second}, max: darwinMax, sys: bsdDefaults, wantSys: true},
		{name: "larger Interval, zero Count and Idle", c: keepalive.Config{Interval: 600000 * time.Second}, max: darwinMax, sys: bsdDefaults, wantSys: true,
			want: "keepalive: Idle+Interval*Count 4807200s is out of range 0s..4294967.295s"},
		{name: "defaults unreadable", c: keepalive.Config{Count: 1 << 30}, max: darwinMax, sysErr: errors.New("no sysctl"), wantSys: true},
		{name: "half seconds", c: keepalive.Config{Idle: 1474836*time.Second + 500*time.Millisecond, Interval: time.Second, Count: 1 << 24}, max: netbsdMax},
		{name: "half seconds past the limit", c: keepalive.Config{Idle: 4697620*time.Second + 500*time.Millisecond, Interval: time.Second, Count: 1 << 24}, max: netbsdMax,
			want: "keepalive: Idle+Interval*Count 21474836.5s is out of range 0s..21474836s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			read := false
			sys := func() (keepalive.Config, error) {
				read = true
				return tt.sys, tt.sysErr
			}
			err := keepalive.CheckSpan(tt.c, tt.max, sys)
			assert.Equal(t, tt.wantSys, read, "defaults read")
			if tt.want == "" {
				assert.Nil(t, err)
				return
			}
			require.NotNil(t, err)
			assert.EqualError(t, err, tt.want)
			assert.ErrorIs(t, err, keepalive.ErrOutOfRange)
			assert.Equal(t, "Idle+Interval*Count", err.Field)
		})
	}
}
