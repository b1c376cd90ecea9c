package keepalive_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// libpqString is the string of the issue: what libpq accepts and pgx and
// lib/pq refuse.
const libpqString = "postgres://app@db.internal:5432/app?keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=3&tcp_user_timeout=40000"

// TestParsePostgres checks that ParsePostgres reads each string's
// keepalive options as its Config and removes them, or, where the platform
// cannot apply that Config, fails with Validate's error for it. Linux's
// limits are in postgres_linux_test.go.
func TestParsePostgres(t *testing.T) {
	all := keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: 40 * time.Second}
	tests := []struct {
		name string
		in   string
		want keepalive.Config
		rest string
	}{
		// Keyword/value form.
		{"empty", "", keepalive.Config{}, ""},
		{"no keepalive option", "host=db port=5432 dbname=app", keepalive.Config{}, "host=db port=5432 dbname=app"},
		{"all five", "host=db keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=40000 dbname=app",
			all, "host=db dbname=app"},
		{"first", "keepalives_idle=30 host=db", keepalive.Config{Idle: 30 * time.Second}, "host=db"},
		{"last", "host=db keepalives_idle=30", keepalive.Config{Idle: 30 * time.Second}, "host=db"},
		{"only", "keepalives_idle=30", keepalive.Config{Idle: 30 * time.Second}, ""},
		{"blanks kept", "  host=db\t keepalives_idle = 30 \n port = 5432  ", keepalive.Config{Idle: 30 * time.Second}, "  host=db\t port = 5432  "},
		{"blanks around removed last", "host=db  keepalives_count=3\t", keepalive.Config{Count: 3}, "host=db\t"},
		{"quotes and escapes kept", `password='a b\'c' keepalives_idle='30' application_name=x\ y`,
			keepalive.Config{Idle: 30 * time.Second}, `password='a b\'c' application_name=x\ y`},
		{"quoted value with blanks", "keepalives_idle=' 30 '", keepalive.Config{Idle: 30 * time.Second}, ""},
		{"escaped digits", `keepalives_idle=3\0`, keepalive.Config{Idle: 30 * time.Second}, ""},
		{"after a closing quote", "host='db'keepalives_idle=30 port=1", keepalive.Config{Idle: 30 * time.Second}, "host='db'port=1"},
		{"before an opening quote", "keepalives_idle='30'host=db", keepalive.Config{Idle: 30 * time.Second}, "host=db"},
		// After "=" libpq skips blanks, so the next keyword is the value.
		{"value after blanks", "application_name= keepalives_idle=30", keepalive.Config{}, "application_name= keepalives_idle=30"},
		{"escaped blank", `application_name=a\ keepalives_idle=30`, keepalive.Config{}, `application_name=a\ keepalives_idle=30`},
		{"keywords are case-sensitive", "KEEPALIVES_IDLE=30", keepalive.Config{}, "KEEPALIVES_IDLE=30"},
		{"last one counts", "keepalives_idle=10 host=db keepalives_idle=20", keepalive.Config{Idle: 20 * time.Second}, "host=db"},
		{"only the last one is read", "keepalives_idle=bad keepalives_idle=20", keepalive.Config{Idle: 20 * time.Second}, ""},
		{"sign and blanks", "keepalives_idle=+30 keepalives_count=' 3\t'", keepalive.Config{Idle: 30 * time.Second, Count: 3}, ""},
		{"tcp_user_timeout 0 is none", "tcp_user_timeout=0", keepalive.Config{}, ""},
		{"negative tcp_user_timeout is none", "tcp_user_timeout=-5", keepalive.Config{}, ""},
		// keepalives is an integer as the others are; only 0 turns
		// keepalive off.
		{"keepalives=1", "keepalives=1", keepalive.Config{}, ""},
		{"keepalives=0", "host=db keepalives=0", keepalive.Config{Off: true}, "host=db"},
		{"keepalives=0 ignores the rest unread", "host=db keepalives=0 keepalives_idle=abc tcp_user_timeout=5000 keepalives_count=0",
			keepalive.Config{Off: true}, "host=db"},
		{"keepalives=0 before its values", "keepalives_idle=30 keepalives=0", keepalive.Config{Off: true}, ""},
		{"keepalives blanks", "keepalives=' 0 '", keepalive.Config{Off: true}, ""},
		{"keepalives negative", "keepalives=-1", keepalive.Config{}, ""},
		{"keepalives 2", "keepalives=+2", keepalive.Config{}, ""},
		{"keepalives last one counts", "keepalives=0 keepalives=1 keepalives_idle=30", keepalive.Config{Idle: 30 * time.Second}, ""},

		// URI form.
		{"URI of the issue", libpqString, all, "postgres://app@db.internal:5432/app"},
		{"URI postgresql", "postgresql://db/app?keepalives_count=3", keepalive.Config{Count: 3}, "postgresql://db/app"},
		{"URI others kept in order", "postgres://u:p@db:5432/app?sslmode=disable&keepalives=1&keepalives_idle=30&application_name=x",
			keepalive.Config{Idle: 30 * time.Second}, "postgres://u:p@db:5432/app?sslmode=disable&application_name=x"},
		{"URI first", "postgres://db?keepalives_idle=30&sslmode=disable", keepalive.Config{Idle: 30 * time.Second}, "postgres://db?sslmode=disable"},
		{"URI no keepalive option", "postgres://db/app?sslmode=disable&ssl=true", keepalive.Config{}, "postgres://db/app?sslmode=disable&ssl=true"},
		{"URI no query", "postgres://db/app", keepalive.Config{}, "postgres://db/app"},
		{"URI empty query", "postgres://db/app?", keepalive.Config{}, "postgres://db/app?"},
		{"URI percent-encoding", "postgres://db?keepalives%5Fidle=%33%30&application_name=a%20b", keepalive.Config{Idle: 30 * time.Second},
			"postgres://db?application_name=a%20b"},
		{"URI trailing & stays after a kept parameter", "postgres://db?a=1&keepalives_idle=30&", keepalive.Config{Idle: 30 * time.Second}, "postgres://db?a=1&"},
		{"URI trailing & goes with the query", "postgres://db?keepalives_idle=30&", keepalive.Config{Idle: 30 * time.Second}, "postgres://db"},
		{"URI # is not special", "postgres://db?application_name=a#b&keepalives_idle=3", keepalive.Config{Idle: 3 * time.Second},
			"postgres://db?application_name=a#b"},
		{"URI IPv6 and several hosts", "postgres://[::1]:5432,[fe80::1%25eth0],db:6432/app?keepalives_count=5",
			keepalive.Config{Count: 5}, "postgres://[::1]:5432,[fe80::1%25eth0],db:6432/app"},
		// The user information ends at the first '@' before any '/', so
		// this '?' is in the user name and there is no query.
		{"URI ? in the user", "postgres://db?keepalives_idle=30@host/app", keepalive.Config{}, "postgres://db?keepalives_idle=30@host/app"},
		{"URI ? in the user, then a query", "postgres://us?er@db/app?keepalives_idle=30", keepalive.Config{Idle: 30 * time.Second}, "postgres://us?er@db/app"},
		{"URI / in the database name", "postgres://db/a/b?keepalives_idle=30", keepalive.Config{Idle: 30 * time.Second}, "postgres://db/a/b"},
		{"URI keepalives=0", "postgres://db?keepalives=0&keepalives_idle=0&tcp_user_timeout=1", keepalive.Config{Off: true}, "postgres://db"},
		{"URI last one counts", "postgres://db?keepalives_idle=1&keepalives_idle=2", keepalive.Config{Idle: 2 * time.Second}, "postgres://db"},
		// The designators are case-sensitive: this is keyword/value text.
		{"uppercase designator is a keyword", "POSTGRES=x keepalives_idle=30", keepalive.Config{Idle: 30 * time.Second}, "POSTGRES=x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, rest, err := keepalive.ParsePostgres(tt.in)
			if verr := tt.want.Validate(); verr != nil {
				assert.EqualError(t, err, verr.Error())
				assert.Zero(t, c, "Config on error")
				assert.Empty(t, rest, "string on error")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, c, "Config")
			assert.Equal(t, tt.rest, rest, "the string without the keepalive options")
		})
	}
}

// TestParsePostgresErrors checks libpq's errors, and the range each option
// libpq passes to setsockopt has on this platform. Linux's messages are in
// postgres_linux_test.go.
func TestParsePostgresErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the error text
	}{
		{"not an integer", "keepalives_idle=30s",
			`keepalive: invalid integer value "30s" for connection option "keepalives_idle"`},
		{"empty value", "keepalives_interval=''",
			`keepalive: invalid integer value "" for connection option "keepalives_interval"`},
		{"hexadecimal", "keepalives_count=0x3",
			`keepalive: invalid integer value "0x3" for connection option "keepalives_count"`},
		{"beyond int", "tcp_user_timeout=2147483648",
			`keepalive: invalid integer value "2147483648" for connection option "tcp_user_timeout"`},
		{"beyond long", "keepalives_idle=99999999999999999999",
			`keepalive: invalid integer value "99999999999999999999" for connection option "keepalives_idle"`},
		{"keepalives not an integer", "keepalives=yes",
			`keepalive: invalid integer value "yes" for connection option "keepalives"`},
		{"keepalives empty", "keepalives=''",
			`keepalive: invalid integer value "" for connection option "keepalives"`},
		{"keepalives beyond int", "keepalives=4294967296",
			`keepalive: invalid integer value "4294967296" for connection option "keepalives"`},
		{"URI bad value", "postgres://db?keepalives_count=%33x",
			`keepalive: invalid integer value "3x" for connection option "keepalives_count"`},

		{"missing =", "host", `keepalive: missing "=" after "host" in connection info string`},
		{"missing = after blanks", "host db", `keepalive: missing "=" after "host" in connection info string`},
		{"unterminated quote", "host=db password='abc", "keepalive: unterminated quoted string in connection info string"},
		{"escaped closing quote", `password='abc\'`, "keepalive: unterminated quoted string in connection info string"},
		{"URI missing =", "postgres://db?a", `keepalive: missing key/value separator "=" in URI query parameter: "a"`},
		{"URI empty parameter", "postgres://db?a=1&&b=2", `keepalive: missing key/value separator "=" in URI query parameter: ""`},
		{"URI extra =", "postgres://db?a=1=2", `keepalive: extra key/value separator "=" in URI query parameter: "a"`},
		{"URI bad percent", "postgres://db?keepalives_idle=%zz", `keepalive: invalid percent-encoded token: "%zz"`},
		{"URI short percent", "postgres://db?a=%3", `keepalive: invalid percent-encoded token: "%3"`},
		{"URI %00", "postgres://db?a=%00", `keepalive: forbidden value %00 in percent-encoded value: "%00"`},
		{"URI unclosed IPv6", "postgres://[::1/db", `keepalive: end of string reached when looking for matching "]" in IPv6 host address in URI: "postgres://[::1/db"`},
		{"URI empty IPv6", "postgres://[]/db", `keepalive: IPv6 host address may not be empty in URI: "postgres://[]/db"`},
		{"URI after IPv6", "postgres://[::1]x/db", `keepalive: unexpected character "x" at position 17 in URI (expected ":" or "/"): "postgres://[::1]x/db"`},
		{"NUL", "host=db\x00 keepalives_idle=30", "keepalive: connection string contains a NUL byte, which ends it for libpq"},
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

	// The range of keepalives_idle, keepalives_interval and
	// keepalives_count: whole seconds (probes) from 1 to the platform's
	// largest, where the platform sets the field. Where it does not, libpq
	// passes nothing on, and only a value that is not zero is refused, by
	// Validate.
	p := keepalive.Platform()
	for _, o := range []struct {
		key, field, unit string
		s                keepalive.FieldSupport
	}{
		{"keepalives_idle", "Idle", "seconds", p.Idle},
		{"keepalives_interval", "Interval", "seconds", p.Interval},
		{"keepalives_count", "Count", "probes", p.Count},
	} {
		t.Run(o.key, func(t *testing.T) {
			if !o.s.Settable {
				c, _, err := keepalive.ParsePostgres(o.key + "=0")
				if verr := (keepalive.Config{}).Validate(); verr != nil {
					// Plan 9, js and wasip1 refuse every Config.
					assert.EqualError(t, err, verr.Error(), "zero")
				} else {
					assert.NoError(t, err, "zero")
				}
				assert.Zero(t, c, "zero")
				_, _, err = keepalive.ParsePostgres(o.key + "=30")
				assert.ErrorIs(t, err, errors.ErrUnsupported)
				assert.ErrorContains(t, err, o.field+" is not supported on ")
				return
			}
			largest := o.s.Max
			if o.unit == "seconds" {
				largest = int64(time.Duration(o.s.Max) * o.s.Unit / time.Second)
			}
			for _, v := range []int64{0, -1, largest + 1} {
				_, _, err := keepalive.ParsePostgres(fmt.Sprintf("%s=%d", o.key, v))
				assert.EqualError(t, err, fmt.Sprintf(`keepalive: invalid value "%d" for connection option %q: out of range 1..%d %s (libpq passes %d to setsockopt, which fails)`,
					v, o.key, largest, o.unit, max(v, 0)), "%d", v)
			}
		})
	}
}

// FuzzParsePostgres checks that ParsePostgres never panics, that its errors
// carry the package's prefix and leave the results zero, and that for every
// string it accepts:
//   - the Config is valid;
//   - the returned string has the same options as the input, in the same
//     order with the same values, less the five keepalive ones;
//   - it is the input itself when the input has none of them;
//   - parsing it again removes nothing and yields the zero Config.
//
// The seed corpus is in testdata/fuzz/FuzzParsePostgres.
func FuzzParsePostgres(f *testing.F) {
	f.Add(libpqString)
	f.Add("host=db keepalives_idle = '30' password='a\\'b' keepalives=1")
	f.Fuzz(func(t *testing.T, s string) {
		c, rest, err := keepalive.ParsePostgres(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "keepalive: ") {
				t.Errorf("ParsePostgres(%q) error %q lacks the keepalive: prefix", s, err)
			}
			if c != (keepalive.Config{}) || rest != "" {
				t.Errorf("ParsePostgres(%q) = %+v, %q with error %v; want zero results", s, c, rest, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("ParsePostgres(%q) = %+v, which is invalid: %v", s, c, err)
		}
		in, err := keepalive.PostgresParams(s)
		if err != nil {
			t.Fatalf("PostgresParams(%q) fails where ParsePostgres did not: %v", s, err)
		}
		out, err := keepalive.PostgresParams(rest)
		if err != nil {
			t.Fatalf("ParsePostgres(%q) returned %q, which does not parse: %v", s, rest, err)
		}
		others := slices.DeleteFunc(slices.Clone(in), func(kv [2]string) bool {
			return slices.Contains(keepalive.PostgresKeys, kv[0])
		})
		if !slices.Equal(others, out) && !(len(others) == 0 && len(out) == 0) {
			t.Fatalf("ParsePostgres(%q) returned %q\nwhose options are %q\nwant %q", s, rest, out, others)
		}
		if len(others) == len(in) && rest != s {
			t.Fatalf("ParsePostgres(%q) changed a string without keepalive options into %q", s, rest)
		}
		c2, rest2, err := keepalive.ParsePostgres(rest)
		if err != nil || c2 != (keepalive.Config{}) || rest2 != rest {
			t.Fatalf("ParsePostgres(%q) returned %q, which parses again as %+v, %q, %v", s, rest, c2, rest2, err)
		}
	})
}

// FuzzParsePostgresRoundTrip builds a connection string in either form from
// one option of any key and value (quoted and escaped as libpq reads them,
// or percent-encoded) and the five keepalive options with given values, and
// checks that ParsePostgres returns exactly those values and exactly the
// string built without the keepalive options, from which the option comes
// back unchanged.
func FuzzParsePostgresRoundTrip(f *testing.F) {
	f.Add("application_name", "it's a \\ test", 30, 10, 3, 40000, false)
	f.Add("options", "-c x=1&y=2", 1, 32767, 127, 0, true)
	f.Fuzz(func(t *testing.T, key, value string, idle, interval, count, userTimeout int, uri bool) {
		if key == "" || strings.ContainsAny(key, "\x00") || strings.ContainsAny(value, "\x00") ||
			slices.Contains(keepalive.PostgresKeys, key) {
			return
		}
		if !uri && (strings.ContainsAny(key, "= \t\n\v\f\r")) {
			return // a keyword/value keyword cannot hold these
		}
		want := keepalive.Config{
			Idle:        time.Duration(idle) * time.Second,
			Interval:    time.Duration(interval) * time.Second,
			Count:       count,
			UserTimeout: time.Duration(userTimeout) * time.Millisecond,
		}
		if idle < 1 || idle > 32767 || interval < 1 || interval > 32767 || count < 1 || count > 127 ||
			userTimeout < 0 || userTimeout > 1<<31-1 || want.Validate() != nil {
			return
		}
		opts := fmt.Sprintf("keepalives_idle %d keepalives_interval %d keepalives_count %d tcp_user_timeout %d",
			idle, interval, count, userTimeout)
		var in, rest string
		if uri {
			rest = "postgres://u@db:5432/app?" + percentEncode(key) + "=" + percentEncode(value)
			in = rest
			f := strings.Fields(opts)
			for i := 0; i < len(f); i += 2 {
				in += "&" + f[i] + "=" + f[i+1]
			}
			in = strings.Replace(in, "?", "?keepalives=1&", 1)
		} else {
			quote := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
			rest = "host=db " + key + "='" + quote.Replace(value) + "'"
			f := strings.Fields(opts)
			in = "keepalives = 1 " + rest
			for i := 0; i < len(f); i += 2 {
				in += "\t" + f[i] + " = '" + f[i+1] + "'"
			}
		}
		c, got, err := keepalive.ParsePostgres(in)
		if err != nil {
			t.Fatalf("ParsePostgres(%q): %v", in, err)
		}
		if c != want || got != rest {
			t.Fatalf("ParsePostgres(%q) = %+v, %q; want %+v, %q", in, c, got, want, rest)
		}
		kv, err := keepalive.PostgresParams(got)
		if err != nil {
			t.Fatal(err)
		}
		if wantKV := [2]string{key, value}; kv[len(kv)-1] != wantKV {
			t.Fatalf("%q reads back as %q; want %q", got, kv[len(kv)-1], wantKV)
		}
	})
}

// percentEncode encodes every byte of s but RFC 3986's unreserved ones.
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
