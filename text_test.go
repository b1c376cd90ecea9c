package keepalive_test

import (
	"encoding"
	"encoding/json"
	"flag"
	"fmt"
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

// textFull is a Config with every field set, as Linux takes it.
var textFull = keepalive.Config{Idle: 60 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 75 * time.Second}

// TestParseConfig checks that ParseConfig reads each text as its Config
// or, where the platform cannot apply that Config, fails with Validate's
// error for it.
func TestParseConfig(t *testing.T) {
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
		// Every field the platform sets, as String writes it.
		{fullConfig(t).String(), fullConfig(t)},
		{withOff(fullConfig(t)).String(), withOff(fullConfig(t))},
	} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := keepalive.ParseConfig(tt.in)
			if verr := tt.want.Validate(); verr != nil {
				assert.EqualError(t, err, verr.Error())
				assert.Zero(t, got)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

// withOff returns c with Off set.
func withOff(c keepalive.Config) keepalive.Config {
	c.Off = true
	return c
}

// TestParseConfigErrors checks the errors of texts that do not parse, and of
// values that parse but the platform cannot apply, which are Validate's.
// Linux's messages for the latter are in text_linux_test.go.
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

	// Values that parse are validated, with Validate's error: each field
	// one unit past the platform's limit, or set where the platform
	// cannot set it, and a negative count.
	p, w := keepalive.Platform(), wantPlatform(t)
	invalid := []keepalive.Config{{Count: -1}}
	for _, f := range w.fields() {
		s := map[string]keepalive.FieldSupport{"Idle": p.Idle, "Interval": p.Interval, "Count": p.Count, "UserTimeout": p.UserTimeout}[f.name]
		if s.Settable {
			invalid = append(invalid, withValue(keepalive.Config{}, f.name, (s.Max+1)*unitOf(s)))
		} else {
			invalid = append(invalid, withValue(keepalive.Config{}, f.name, int64(time.Second)))
		}
	}
	for _, c := range invalid {
		t.Run(c.String(), func(t *testing.T) {
			verr := c.Validate()
			require.Error(t, verr)
			got, err := keepalive.ParseConfig(c.String())
			assert.EqualError(t, err, verr.Error())
			assert.Zero(t, got)
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
	type settings struct {
		Name      string           `json:"name"`
		Keepalive keepalive.Config `json:"keepalive"`
		Optional  *keepalive.Config
	}
	full := fullConfig(t)
	in := settings{Name: "db", Keepalive: full}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	assert.JSONEq(t, `{"name":"db","keepalive":"`+full.String()+`","Optional":null}`, string(b))

	var out settings
	if verr := full.Validate(); verr != nil {
		// Plan 9, js and wasip1 refuse every Config, even in JSON.
		err := json.Unmarshal(b, &out)
		require.Error(t, err)
		assert.Contains(t, err.Error(), verr.Error())
	} else {
		require.NoError(t, json.Unmarshal(b, &out))
		assert.Equal(t, in, out)
	}

	for _, tt := range []struct {
		name, in string
		want     keepalive.Config
	}{
		{"empty string", `{"keepalive":""}`, keepalive.Config{}},
		{"some keys", `{"keepalive":"` + configFor(t, 30*time.Second, 0, 4, 0).String() + `"}`, configFor(t, 30*time.Second, 0, 4, 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var s settings
			err := json.Unmarshal([]byte(tt.in), &s)
			if verr := tt.want.Validate(); verr != nil {
				// A platform that refuses even the zero Config (Plan 9,
				// js, wasip1) refuses its text too.
				require.Error(t, err)
				assert.Contains(t, err.Error(), verr.Error())
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, s.Keepalive)
		})
	}

	for _, tt := range []struct {
		name, in, want string
	}{
		{"unknown key", `{"keepalive":"idel=30s"}`, `keepalive: unknown key "idel" (valid keys: idle, interval, count, user-timeout, and the word off)`},
		{"invalid", `{"keepalive":"count=-1"}`, keepalive.Config{Count: -1}.Validate().Error()},
		{"not a string", `{"keepalive":{"Idle":30000000000}}`, "json: cannot unmarshal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := settings{Keepalive: full}
			err := json.Unmarshal([]byte(tt.in), &s)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, full, s.Keepalive, "a failed decode changed the Config")
		})
	}
}

// TestConfigUnmarshalTextKeepsValueOnError checks that UnmarshalText leaves
// the Config as it was when the text is invalid, on every platform, and
// replaces it whole when the text is valid on this platform.
func TestConfigUnmarshalTextKeepsValueOnError(t *testing.T) {
	c := keepalive.Config{Count: 4}
	require.Error(t, c.UnmarshalText([]byte("count=4,idle=-1s")))
	assert.Equal(t, keepalive.Config{Count: 4}, c)
	want := keepalive.Config{Idle: 30 * time.Second}
	err := c.UnmarshalText([]byte("idle=30s"))
	if verr := want.Validate(); verr != nil {
		assert.EqualError(t, err, verr.Error())
		assert.Equal(t, keepalive.Config{Count: 4}, c)
		return
	}
	require.NoError(t, err)
	assert.Equal(t, want, c, "UnmarshalText replaces the whole Config")
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
		{"given", []string{"-keepalive", fullConfig(t).String()}, fullConfig(t), ""},
		{"empty", []string{"-keepalive="}, keepalive.Config{}, ""},
		{"unknown key", []string{"-keepalive", "idel=30s"}, keepalive.Config{}, `invalid value "idel=30s" for flag -keepalive: keepalive: unknown key "idel" (valid keys: idle, interval, count, user-timeout, and the word off)`},
		{"invalid", []string{"-keepalive", "idle=-1s"}, keepalive.Config{}, `invalid value "idle=-1s" for flag -keepalive: ` + keepalive.Config{Idle: -time.Second}.Validate().Error()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fs, c := newFlags()
			err := fs.Parse(tt.args)
			if verr := tt.want.Validate(); tt.wantErr == "" && len(tt.args) > 0 && verr != nil {
				// A platform that refuses even the zero Config (Plan 9,
				// js, wasip1) refuses its text too.
				tt.wantErr = fmt.Sprintf("invalid value %q for flag -keepalive: %v", strings.TrimPrefix(tt.args[len(tt.args)-1], "-keepalive="), verr)
			}
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
