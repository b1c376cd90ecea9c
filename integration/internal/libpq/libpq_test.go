//go:build linux && cgo

package libpq_test

import (
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/integration/internal/libpq"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// keys are the options keepalive.ParsePostgres reads.
var keys = []string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}

// load skips the test without libpq.so.5, or fails it when CI is set.
func load(t testing.TB) {
	t.Helper()
	if err := libpq.Load(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%v (CI is set: Debian's libpq5, which postgresql brings, must be installed)", err)
		}
		t.Skip(err)
	}
}

// quote writes v as a single-quoted keyword/value value.
func quote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// TestSocketMatchesLibpq connects with libpq, as far as its socket, with
// each keepalive option set to values libpq accepts and refuses, and
// checks that ParsePostgres accepts exactly what libpq accepts and that its
// Config means what libpq set on the socket: SO_KEEPALIVE, TCP_KEEPIDLE,
// TCP_KEEPINTVL, TCP_KEEPCNT and TCP_USER_TIMEOUT read back with getsockopt.
func TestSocketMatchesLibpq(t *testing.T) {
	load(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	base := fmt.Sprintf("host=127.0.0.1 port=%d sslmode=disable gssencmode=disable", ln.Addr().(*net.TCPAddr).Port)

	values := []string{"0", "1", "-1", "30", " 30 ", "30 ", " 30", "+30", "30s", "", " ", "0x1e", "1e3",
		"127", "128", "32767", "32768", "40000", "2147483647", "2147483648", "-2147483648",
		"4294967296", "99999999999999999999", "-99999999999999999999"}
	var conns []string
	for _, k := range keys {
		for _, v := range values {
			conns = append(conns, base+" "+k+"="+quote(v))
		}
	}
	conns = append(conns,
		base,
		base+" keepalives=0 keepalives_idle=30 tcp_user_timeout=5000",
		base+" keepalives=0 keepalives_idle=bad keepalives_count=0",
		base+" keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=40000",
		base+" keepalives_idle=bad keepalives_idle=30",
		base+" keepalives=0 keepalives=1 keepalives_count=4",
		fmt.Sprintf("postgres://%s/?sslmode=disable&gssencmode=disable&keepalives_idle=%%33%%30&keepalives_count=5&tcp_user_timeout=-1", ln.Addr()),
	)
	for _, conn := range conns {
		got, libErr := libpq.Socket(conn)
		c, _, err := keepalive.ParsePostgres(conn)
		if libErr != nil {
			assert.Error(t, err, "libpq refuses %q: %v", conn, libErr)
			t.Logf("%-40q libpq: %v\n%42s ours:  %v", strings.TrimPrefix(conn, base), lastLine(libErr), "", err)
			continue
		}
		if !assert.NoError(t, err, "libpq accepts %q", conn) {
			continue
		}
		want := sockopts.Values{KeepAlive: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
		if want.Idle == 0 {
			want.Idle = sys.Idle
		}
		if want.Interval == 0 {
			want.Interval = sys.Interval
		}
		if want.Count == 0 {
			want.Count = sys.Count
		}
		assert.Equal(t, want, got, "libpq's socket for %q; ParsePostgres: %+v", conn, c)
	}
}

func lastLine(err error) string {
	s := strings.TrimSpace(err.Error())
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// FuzzParsePostgresLibpq compares ParsePostgres with libpq's own parser,
// PQconninfoParse, on any string: a string libpq cannot parse is refused
// by ParsePostgres too (unless libpq objects only to what ParsePostgres
// leaves to the driver: an unknown option, a bad percent-encoding outside
// the query); for a string both parse, libpq reads from the returned string
// exactly the options it reads from the input, less the five keepalive
// ones, and the keepalive values libpq read give the same Config.
func FuzzParsePostgresLibpq(f *testing.F) {
	for _, s := range []string{
		"",
		"host=db keepalives=1 keepalives_idle=30 keepalives_interval=10 keepalives_count=3 tcp_user_timeout=40000 dbname=app",
		"postgres://app@db.internal:5432/app?keepalives=1&keepalives_idle=30&keepalives_interval=10&keepalives_count=3&tcp_user_timeout=40000",
		`password='a b\'c' keepalives_idle=' 30 ' application_name=x\ y`,
		"  host=db\t keepalives_idle = 30 \n port = 5432  ",
		"host='db'keepalives_idle=30 port=1",
		"application_name= keepalives_idle=30",
		"keepalives_idle=bad keepalives=0 keepalives=1 keepalives_idle=20",
		"postgres://us?er@db/app?keepalives_idle=30",
		"postgres://db?keepalives_idle=30@host/app",
		"postgres://[::1]:5432,[fe80::1%25eth0],db:6432/app?keepalives_count=5&sslmode=disable&",
		"postgresql://db?keepalives%5Fidle=%33%30&application_name=a%20b&ssl=true",
		"postgres://db?a=1=2",
		"host=db password='abc",
		`password='abc\`,
		"host db",
		"postgres://[]/db",
		"postgres://[::1]x/db",
		"requiressl=1 keepalives_count=3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		load(t)
		if strings.IndexByte(s, 0) >= 0 {
			return // libpq never sees past a NUL
		}
		lib, libErr := libpq.ConninfoParse(s)
		c, rest, err := keepalive.ParsePostgres(s)
		if libErr != nil {
			msg := libErr.Error()
			if strings.Contains(msg, "invalid connection option") || strings.Contains(msg, "invalid URI query parameter") ||
				strings.Contains(msg, "percent-encoded") && err == nil {
				return
			}
			if err == nil {
				t.Fatalf("libpq refuses %q (%s); ParsePostgres accepts it: %+v, %q", s, msg, c, rest)
			}
			return
		}
		if err != nil {
			if !strings.Contains(err.Error(), "connection option") {
				t.Fatalf("libpq parses %q; ParsePostgres refuses its syntax: %v", s, err)
			}
			return // a value libpq would refuse when connecting
		}
		after, err := libpq.ConninfoParse(rest)
		if err != nil {
			t.Fatalf("ParsePostgres(%q) returned %q, which libpq cannot parse: %v", s, rest, err)
		}
		others := maps.Clone(lib)
		var canonical []string
		for _, k := range keys {
			if v, ok := lib[k]; ok {
				canonical = append(canonical, k+"="+quote(v))
			}
			delete(others, k)
		}
		if !maps.Equal(others, after) {
			t.Fatalf("libpq reads %q as\n%v\nand the returned %q as\n%v", s, sorted(others), rest, sorted(after))
		}
		c2, _, err := keepalive.ParsePostgres(strings.Join(canonical, " "))
		if err != nil || c2 != c {
			t.Fatalf("ParsePostgres(%q) = %+v; the keepalive values libpq read, %q, give %+v, %v", s, c, canonical, c2, err)
		}
	})
}

func sorted(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, k+"="+m[k])
	}
	return out
}
