package keepalive_test

import (
	"encoding"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

var (
	_ encoding.TextMarshaler   = keepalive.Config{}
	_ encoding.TextUnmarshaler = (*keepalive.Config)(nil)
)

// textFull is a Config with every field set; tests that use it need a
// platform with TCP_USER_TIMEOUT.
var textFull = keepalive.Config{Idle: 60 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 75 * time.Second}

// needUserTimeout skips t where the platform cannot set UserTimeout, so that
// Validate refuses a Config that has one.
func needUserTimeout(t *testing.T) {
	t.Helper()
	if err := (keepalive.Config{UserTimeout: time.Second}).Validate(); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("UserTimeout is not supported here: %v", err)
	}
}

func TestParseConfig(t *testing.T) {
	needUserTimeout(t)
	for _, tt := range []struct {
		in   string
		want keepalive.Config
	}{
		{"", keepalive.Config{}},
		{"  ", keepalive.Config{}},
		{"idle=60s,interval=5s,count=3,user-timeout=75s", textFull},
		{"user-timeout=75s,count=3,interval=5s,idle=60s", textFull},
		{" idle = 1m , interval=5000ms,\tcount=+3 ,user-timeout=1m15s ", textFull},
		{"idle=2h", keepalive.Config{Idle: 2 * time.Hour}},
		{"count=127", keepalive.Config{Count: 127}},
		{"interval=32767s", keepalive.Config{Interval: 32767 * time.Second}},
		{"user-timeout=1500ms", keepalive.Config{UserTimeout: 1500 * time.Millisecond}},
		{"user-timeout=2147483647ms", keepalive.Config{UserTimeout: (1<<31 - 1) * time.Millisecond}},
		// A zero value is allowed: it is the system default, as a left-out key.
		{"idle=0s,count=0", keepalive.Config{}},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := keepalive.ParseConfig(tt.in)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	const valid = "(valid keys: idle, interval, count, user-timeout, and the word off)"
	for _, tt := range []struct {
		in   string
		want string
		is   error // also matched with errors.Is, when not nil
	}{
		{"idel=60s", `keepalive: unknown key "idel" ` + valid, nil},
		{"Idle=60s", `keepalive: unknown key "Idle" ` + valid, nil},
		{"=60s", `keepalive: unknown key "" ` + valid, nil},
		{"idle", `keepalive: "idle" is not key=value ` + valid, nil},
		{"idle:60s", `keepalive: "idle:60s" is not key=value ` + valid, nil},
		{"idle=60s,", `keepalive: empty item in "idle=60s," (want key=value pairs separated by commas; valid keys: idle, interval, count, user-timeout, and the word off)`, nil},
		{"idle=60s,,count=3", `keepalive: empty item in "idle=60s,,count=3" (want key=value pairs separated by commas; valid keys: idle, interval, count, user-timeout, and the word off)`, nil},
		{"idle=60s,idle=30s", `keepalive: duplicate key "idle"`, nil},
		{"count=3,idle=1s,count=3", `keepalive: duplicate key "count"`, nil},
		{"idle=60", `keepalive: idle value "60" is not a duration such as 60s or 1500ms: time: missing unit in duration "60"`, nil},
		{"interval=", `keepalive: interval value "" is not a duration such as 60s or 1500ms: time: invalid duration ""`, nil},
		{"user-timeout=soon", `keepalive: user-timeout value "soon" is not a duration such as 60s or 1500ms: time: invalid duration "soon"`, nil},
		{"count=3s", `keepalive: count value "3s" is not a whole number: strconv.Atoi: parsing "3s": invalid syntax`, strconv.ErrSyntax},
		{"count=99999999999999999999", `keepalive: count value "99999999999999999999" is not a whole number: strconv.Atoi: parsing "99999999999999999999": value out of range`, strconv.ErrRange},
		// Values that parse are validated, with Validate's error.
		{"count=128", "keepalive: Count 128 is out of range 1..127", nil},
		{"idle=1.5s", "keepalive: Idle 1.5s is not a whole number of seconds", nil},
		{"interval=-5s", "keepalive: Interval -5s is out of range 1s..32767s", nil},
		{"idle=32768s", "keepalive: Idle 32768s is out of range 1s..32767s", nil},
		{"user-timeout=1.5ms", "keepalive: UserTimeout 1.5ms is not a whole number of milliseconds", nil},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := keepalive.ParseConfig(tt.in)
			require.Error(t, err)
			assert.EqualError(t, err, tt.want)
			assert.Equal(t, keepalive.Config{}, got, "the Config returned with an error")
			if tt.is != nil {
				assert.ErrorIs(t, err, tt.is)
			}
		})
	}
}

func TestConfigString(t *testing.T) {
	for _, tt := range []struct {
		c    keepalive.Config
		want string
	}{
		{keepalive.Config{}, ""},
		{textFull, "idle=60s,interval=5s,count=3,user-timeout=75s"},
		{keepalive.Config{Count: 9}, "count=9"},
		{keepalive.Config{Idle: 2 * time.Hour, Interval: 75 * time.Second}, "idle=7200s,interval=75s"},
		{keepalive.Config{Interval: time.Second, UserTimeout: 1500 * time.Millisecond}, "interval=1s,user-timeout=1500ms"},
		// Invalid Configs are written as they are, for ParseConfig to refuse.
		{keepalive.Config{Idle: 1500 * time.Millisecond}, "idle=1500ms"},
		{keepalive.Config{Idle: 1500 * time.Microsecond}, "idle=1.5ms"},
		{keepalive.Config{Interval: -5 * time.Second, Count: -1}, "interval=-5s,count=-1"},
		{keepalive.Config{UserTimeout: math.MinInt64}, "user-timeout=-2562047h47m16.854775808s"},
	} {
		t.Run(tt.want, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.c.String())
			b, err := tt.c.MarshalText()
			require.NoError(t, err)
			assert.Equal(t, tt.want, string(b))
		})
	}
}

// TestConfigTextRoundTrip checks that ParseConfig reads back what String
// wrote: the same Config when it is valid, and for an invalid one the same
// values, as the Validate error that names them shows.
func TestConfigTextRoundTrip(t *testing.T) {
	needUserTimeout(t)
	for _, c := range []keepalive.Config{
		{},
		textFull,
		{Idle: time.Second},
		{Idle: 32767 * time.Second, Interval: 32767 * time.Second, Count: 127, UserTimeout: (1<<31 - 1) * time.Millisecond},
		{UserTimeout: time.Millisecond},
		{Idle: 90 * time.Second, UserTimeout: 90500 * time.Millisecond},
		// Invalid: the error must name the value that was written.
		{Idle: 1500 * time.Millisecond},
		{Interval: 2*time.Second + time.Nanosecond},
		{Count: 128},
		{Count: -1},
		{Idle: -time.Hour},
		{UserTimeout: 1 << 31 * time.Millisecond},
		{UserTimeout: math.MaxInt64},
		{UserTimeout: math.MinInt64},
	} {
		t.Run(c.String(), func(t *testing.T) {
			got, err := keepalive.ParseConfig(c.String())
			if verr := c.Validate(); verr != nil {
				assert.EqualError(t, err, verr.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, c, got)
		})
	}
}

func TestConfigJSON(t *testing.T) {
	needUserTimeout(t)
	type settings struct {
		Name      string           `json:"name"`
		Keepalive keepalive.Config `json:"keepalive"`
		Optional  *keepalive.Config
	}
	in := settings{Name: "db", Keepalive: textFull}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"db","keepalive":"idle=60s,interval=5s,count=3,user-timeout=75s","Optional":null}`, string(b))

	var out settings
	require.NoError(t, json.Unmarshal(b, &out))
	assert.Equal(t, in, out)

	for _, tt := range []struct {
		name, in string
		want     keepalive.Config
	}{
		{"empty string", `{"keepalive":""}`, keepalive.Config{}},
		{"some keys", `{"keepalive":"count=4,idle=30s"}`, keepalive.Config{Idle: 30 * time.Second, Count: 4}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s settings
			require.NoError(t, json.Unmarshal([]byte(tt.in), &s))
			assert.Equal(t, tt.want, s.Keepalive)
		})
	}

	for _, tt := range []struct {
		name, in, want string
	}{
		{"unknown key", `{"keepalive":"idel=30s"}`, `keepalive: unknown key "idel" (valid keys: idle, interval, count, user-timeout, and the word off)`},
		{"invalid", `{"keepalive":"count=200"}`, "keepalive: Count 200 is out of range 1..127"},
		{"not a string", `{"keepalive":{"Idle":30000000000}}`, "json: cannot unmarshal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := settings{Keepalive: textFull}
			err := json.Unmarshal([]byte(tt.in), &s)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, textFull, s.Keepalive, "a failed decode changed the Config")
		})
	}
}

func TestConfigUnmarshalTextKeepsValueOnError(t *testing.T) {
	c := keepalive.Config{Count: 4}
	require.Error(t, c.UnmarshalText([]byte("count=4,idle=1.5s")))
	assert.Equal(t, keepalive.Config{Count: 4}, c)
	require.NoError(t, c.UnmarshalText([]byte("idle=30s")))
	assert.Equal(t, keepalive.Config{Idle: 30 * time.Second}, c, "UnmarshalText replaces the whole Config")
}

// TestConfigFlag checks a Config as a command-line flag through
// flag.TextVar.
func TestConfigFlag(t *testing.T) {
	def := keepalive.Config{Idle: 60 * time.Second, Count: 5}
	newFlags := func() (*flag.FlagSet, *keepalive.Config) {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var c keepalive.Config
		fs.TextVar(&c, "keepalive", def, "TCP keepalive")
		return fs, &c
	}
	for _, tt := range []struct {
		name    string
		args    []string
		want    keepalive.Config
		wantErr string
	}{
		{"default", nil, def, ""},
		{"given", []string{"-keepalive", "idle=30s,interval=5s,count=3"}, keepalive.Config{Idle: 30 * time.Second, Interval: 5 * time.Second, Count: 3}, ""},
		{"empty", []string{"-keepalive="}, keepalive.Config{}, ""},
		{"unknown key", []string{"-keepalive", "idel=30s"}, keepalive.Config{}, `invalid value "idel=30s" for flag -keepalive: keepalive: unknown key "idel" (valid keys: idle, interval, count, user-timeout, and the word off)`},
		{"invalid", []string{"-keepalive", "idle=0.5s"}, keepalive.Config{}, `invalid value "idle=0.5s" for flag -keepalive: keepalive: Idle 0.5s is out of range 1s..32767s`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs, c := newFlags()
			err := fs.Parse(tt.args)
			if tt.wantErr != "" {
				assert.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, *c)
		})
	}

	t.Run("help", func(t *testing.T) {
		fs, _ := newFlags()
		var b strings.Builder
		fs.SetOutput(&b)
		fs.PrintDefaults()
		assert.Contains(t, b.String(), "(default idle=60s,count=5)")
	})
}

// FuzzParseConfig checks that ParseConfig never panics, and that for every
// input it accepts, String writes a text that ParseConfig reads back as the
// same Config. The seed corpus is in testdata/fuzz/FuzzParseConfig.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{
		"",
		"idle=60s,interval=5s,count=3,user-timeout=75s",
		"count=9",
		" idle = 1m30s , interval=1500ms",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := keepalive.ParseConfig(s)
		if err != nil {
			if c != (keepalive.Config{}) {
				t.Errorf("ParseConfig(%q) = %+v with error %v; want the zero Config", s, c, err)
			}
			if !strings.HasPrefix(err.Error(), "keepalive: ") {
				t.Errorf("ParseConfig(%q) error %q lacks the keepalive: prefix", s, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParseConfig(%q) accepted an invalid Config %#v: %v", s, c, err)
		}
		text := c.String()
		got, err := keepalive.ParseConfig(text)
		if err != nil {
			t.Fatalf("ParseConfig(%q) = %#v, whose String %q does not parse: %v", s, c, text, err)
		}
		if got != c {
			t.Fatalf("ParseConfig(%q) = %#v; its String %q parses as %#v", s, c, text, got)
		}
		if again := got.String(); again != text {
			t.Fatalf("String is not stable: %q, then %q", text, again)
		}
	})
}
