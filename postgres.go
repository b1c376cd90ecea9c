package keepalive

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// The connection options libpq reads for TCP keepalive
// (src/interfaces/libpq/fe-connect.c, PQconninfoOptions), indexed by
// pgOption.
var pgKeys = [numPgOptions]string{"keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout"}

type pgOption int

const (
	pgKeepalives pgOption = iota
	pgIdle
	pgInterval
	pgCount
	pgUserTimeout
	numPgOptions
)

// The URI designators libpq recognizes, compared case-sensitively
// (fe-connect.c: uri_designator, short_uri_designator).
const (
	pgURIDesignator      = "postgresql://"
	pgShortURIDesignator = "postgres://"
)

// ParsePostgres reads the TCP keepalive settings of a PostgreSQL connection
// string and returns them as a Config, with the string stripped of them.
// It reads libpq's options keepalives, keepalives_idle, keepalives_interval,
// keepalives_count and tcp_user_timeout, as libpq reads them on Linux, from
// both forms libpq accepts: the URI (postgresql:// or postgres://, the
// options in the query, percent-encoded or not) and the keyword/value form
// (host=db keepalives_idle=30, values in single quotes with backslash
// escapes, spaces around = allowed).
//
// The returned string is connString without those options, in the same
// form and otherwise byte for byte the same: the other options keep their
// order, quoting, escapes and separators. A removed option takes the
// separator that follows it, or the one before it when it is the last; a URI
// left with no query parameter loses its "?". A string without any of the
// five options is returned unchanged. Pass the returned string to pgx or
// lib/pq, which would otherwise send the five options to the server as
// run-time parameters (and fail with "unrecognized configuration
// parameter"), and dial with a [Dialer] that carries the Config:
//
//	cfg, rest, err := keepalive.ParsePostgres(connString)
//	connConfig, err := pgx.ParseConfig(rest)
//	connConfig.DialFunc = (&keepalive.Dialer{Config: cfg}).DialContext
//
// The values mean what they mean to libpq. keepalives_idle and
// keepalives_interval are whole seconds, keepalives_count a number of
// probes, each from 1 up to the kernel's limit (32767, 32767, 127);
// tcp_user_timeout is in milliseconds, 0 or a negative value for none. An
// option that is absent leaves the system's value, as libpq does, so the
// empty string yields the zero Config: keepalive on at the system's values.
// keepalives=0 turns keepalive off (any other integer leaves it on):
// the result is Config{Off: true}, and the other four options are removed
// without being read, since libpq then neither reads nor applies them, not
// even tcp_user_timeout. When an option appears more than once the last
// one counts, as in libpq.
//
// A value libpq refuses is an error that names the option and the value, as
// libpq does: `keepalive: invalid integer value "30s" for connection option
// "keepalives_idle"`. So is a value libpq accepts but the kernel refuses
// when libpq passes it on (keepalives_idle=0 fails in libpq with
// "setsockopt(TCP_KEEPIDLE) failed: Invalid argument"). A string libpq
// cannot parse (an unterminated quote, a keyword without "=", a bad
// percent-encoding) is an error with libpq's message. The other options are
// not checked: the driver that reads the returned string does that. The
// Config is validated with [Config.Validate]. On error the Config is zero
// and the string empty.
//
// Note that libpq applies these options to TCP connections only, as a
// Dialer does. Options from a service file (service=) are not read. On
// platforms without TCP_USER_TIMEOUT, where libpq ignores tcp_user_timeout,
// a non-zero one fails validation with an error wrapping
// [errors.ErrUnsupported].
//
// ParsePostgres is in this package, not in a package of its own, because it
// depends on nothing else and exists for one trap this package is about: the
// connection string is where PostgreSQL users already write their keepalive
// settings, and the Go drivers pass them to the server, which refuses them.
// It reads libpq's syntax only and leaves the driver to read the rest.
func ParsePostgres(connString string) (Config, string, error) {
	if strings.IndexByte(connString, 0) >= 0 {
		return Config{}, "", fmt.Errorf("keepalive: connection string contains a NUL byte, which ends it for libpq")
	}
	var params []pgParam
	var rest string
	var err error
	if n := pgURIPrefixLen(connString); n > 0 {
		params, rest, err = pgURIParams(connString, n)
	} else {
		params, rest, err = pgKeywordParams(connString)
	}
	if err != nil {
		return Config{}, "", err
	}
	var values [numPgOptions]*string
	for i := range params {
		if o := pgOptionOf(params[i].key); o >= 0 {
			values[o] = &params[i].value // the last one counts
		}
	}
	c, err := pgConfig(values)
	if err != nil {
		return Config{}, "", err
	}
	return c, rest, nil
}

// pgParam is one option of a connection string: its keyword and value as
// libpq reads them (unquoted, unescaped, percent-decoded), and where its
// text starts and ends in the string.
type pgParam struct {
	key, value string
	start, end int
}

func pgOptionOf(key string) pgOption {
	for o, k := range pgKeys {
		if k == key {
			return pgOption(o)
		}
	}
	return -1
}

func pgURIPrefixLen(s string) int {
	switch {
	case strings.HasPrefix(s, pgURIDesignator):
		return len(pgURIDesignator)
	case strings.HasPrefix(s, pgShortURIDesignator):
		return len(pgShortURIDesignator)
	}
	return 0
}

// isCSpace reports whether C's isspace is true for b in the C locale, as
// libpq uses it.
func isCSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\n' || b == '\v' || b == '\f' || b == '\r'
}

// pgKeywordParams parses a keyword/value connection string as libpq's
// conninfo_parse does, and returns its options and the string without the
// keepalive options.
func pgKeywordParams(s string) ([]pgParam, string, error) {
	var params []pgParam
	i := 0
	for i < len(s) {
		if isCSpace(s[i]) {
			i++
			continue
		}
		start := i
		for i < len(s) && s[i] != '=' && !isCSpace(s[i]) {
			i++
		}
		key := s[start:i]
		for i < len(s) && isCSpace(s[i]) {
			i++
		}
		if i == len(s) || s[i] != '=' {
			return nil, "", fmt.Errorf("keepalive: missing \"=\" after %q in connection info string", key)
		}
		i++
		for i < len(s) && isCSpace(s[i]) {
			i++
		}
		// A value ends at white space, or in quotes at the closing quote;
		// a backslash takes the next byte as it is, in either form.
		var value strings.Builder
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i++
		}
		for {
			if i == len(s) {
				if quoted {
					return nil, "", fmt.Errorf("keepalive: unterminated quoted string in connection info string")
				}
				break
			}
			c := s[i]
			if !quoted && isCSpace(c) {
				break
			}
			i++
			if c == '\\' {
				if i < len(s) {
					value.WriteByte(s[i])
					i++
				}
				continue
			}
			if quoted && c == '\'' {
				break
			}
			value.WriteByte(c)
		}
		params = append(params, pgParam{key: key, value: value.String(), start: start, end: i})
	}
	return params, pgKeywordRest(s, params), nil
}

// pgKeywordRest returns s without its keepalive options: the text before the
// first option, each other option followed by the blanks that followed it,
// the last one kept followed by the text after the last option.
func pgKeywordRest(s string, params []pgParam) string {
	if !pgAny(params) {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:params[0].start])
	for i, p := range params {
		if pgOptionOf(p.key) >= 0 {
			continue
		}
		b.WriteString(s[p.start:p.end])
		// The blanks between this option and the next kept one: those
		// that followed this option, unless none is kept after it.
		if pgKeptAfter(params[i+1:]) {
			b.WriteString(s[p.end:params[i+1].start])
		}
	}
	b.WriteString(s[params[len(params)-1].end:])
	return b.String()
}

// pgAny reports whether params has a keepalive option.
func pgAny(params []pgParam) bool {
	for _, p := range params {
		if pgOptionOf(p.key) >= 0 {
			return true
		}
	}
	return false
}

// pgKeptAfter reports whether params has an option that is kept.
func pgKeptAfter(params []pgParam) bool {
	for _, p := range params {
		if pgOptionOf(p.key) < 0 {
			return true
		}
	}
	return false
}

// pgURIParams parses a connection URI as libpq's conninfo_uri_parse_options
// and conninfo_uri_parse_params do, far enough to find its query, and
// returns the query's parameters and the URI without the keepalive ones.
// prefix is the length of the URI designator.
func pgURIParams(s string, prefix int) ([]pgParam, string, error) {
	q, err := pgURIQuery(s, prefix)
	if err != nil || q < 0 {
		return nil, s, err
	}
	var params []pgParam
	i := q
	for i < len(s) {
		start, eq := i, -1
		for {
			if i < len(s) && s[i] == '=' {
				if eq >= 0 {
					return nil, "", fmt.Errorf("keepalive: extra key/value separator \"=\" in URI query parameter: %q", s[start:eq])
				}
				eq = i
				i++
				continue
			}
			if i == len(s) || s[i] == '&' {
				break
			}
			i++
		}
		end := i
		if i < len(s) {
			i++ // past '&'
		}
		if eq < 0 {
			return nil, "", fmt.Errorf("keepalive: missing key/value separator \"=\" in URI query parameter: %q", s[start:end])
		}
		key, err := pgURIDecode(s[start:eq])
		if err != nil {
			return nil, "", err
		}
		value, err := pgURIDecode(s[eq+1 : end])
		if err != nil {
			return nil, "", err
		}
		params = append(params, pgParam{key: key, value: value, start: start, end: end})
	}
	if !pgAny(params) {
		return params, s, nil
	}
	var b strings.Builder
	b.WriteString(s[:q-1]) // up to the '?'
	n := 0
	for _, p := range params {
		if pgOptionOf(p.key) >= 0 {
			continue
		}
		if n == 0 {
			b.WriteByte('?')
		} else {
			b.WriteByte('&')
		}
		b.WriteString(s[p.start:p.end])
		n++
	}
	// A '&' that ended the query stays, after a parameter that stays.
	if n > 0 && params[len(params)-1].end < len(s) {
		b.WriteByte('&')
	}
	return params, b.String(), nil
}

// pgURIQuery returns the index where the query of the URI s begins (just
// after its '?'), or -1 if it has none, scanning the authority and path as
// libpq does: the user information ends at the first '@' before any '/',
// hosts (IPv6 ones in brackets) and ports end at ':', '/', '?' or ',', and
// the database name at '?'.
func pgURIQuery(s string, prefix int) (int, error) {
	at := func(i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	p := prefix
	q := p
	for q < len(s) && s[q] != '@' && s[q] != '/' {
		q++
	}
	if at(q) == '@' {
		p = q + 1
	}
	var prev byte
	for {
		if at(p) == '[' {
			p++
			host := p
			for p < len(s) && s[p] != ']' {
				p++
			}
			if p == len(s) {
				return 0, fmt.Errorf("keepalive: end of string reached when looking for matching \"]\" in IPv6 host address in URI: %q", s)
			}
			if p == host {
				return 0, fmt.Errorf("keepalive: IPv6 host address may not be empty in URI: %q", s)
			}
			p++
			if c := at(p); c != 0 && c != ':' && c != '/' && c != '?' && c != ',' {
				return 0, fmt.Errorf("keepalive: unexpected character %q at position %d in URI (expected \":\" or \"/\"): %q", string(c), p+1, s)
			}
		} else {
			for p < len(s) && !strings.ContainsRune(":/?,", rune(s[p])) {
				p++
			}
		}
		prev = at(p)
		if prev == ':' {
			p++
			for p < len(s) && !strings.ContainsRune("/?,", rune(s[p])) {
				p++
			}
			prev = at(p)
		}
		if prev != ',' {
			break
		}
		p++
	}
	if prev != 0 && prev != '?' {
		// The database name, after the '/'.
		p++
		for p < len(s) && s[p] != '?' {
			p++
		}
		prev = at(p)
	}
	if prev == 0 {
		return -1, nil
	}
	return p + 1, nil
}

// pgURIDecode decodes percent-encoding as libpq's conninfo_uri_decode does.
func pgURIDecode(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 {
		return s, nil
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b = append(b, s[i])
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return "", fmt.Errorf("keepalive: invalid percent-encoded token: %q", s)
		}
		c := unhex(s[i+1])<<4 | unhex(s[i+2])
		if c == 0 {
			return "", fmt.Errorf("keepalive: forbidden value %%00 in percent-encoded value: %q", s)
		}
		b = append(b, c)
		i += 2
	}
	return string(b), nil
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// pgMax returns the largest value the platform accepts for an option libpq
// passes to setsockopt as it is, in libpq's unit, and that unit's name (on
// Linux include/net/tcp.h: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL,
// MAX_TCP_KEEPCNT; each at least 1).
func pgMax(o pgOption) (int64, string) {
	switch o {
	case pgIdle:
		return maxSeconds(optIdle), "seconds"
	case pgInterval:
		return maxSeconds(optInterval), "seconds"
	}
	return support(optCount).Max, "probes"
}

// pgSettable reports whether the platform sets o at all; where it does not,
// Validate says so.
func pgSettable(o pgOption) bool {
	switch o {
	case pgIdle:
		return support(optIdle).Settable
	case pgInterval:
		return support(optInterval).Settable
	}
	return support(optCount).Settable
}

// pgConfig turns the values of the keepalive options (nil where absent) into
// a Config, as libpq's PQconnectPoll, useKeepalives, setKeepalivesIdle,
// setKeepalivesInterval, setKeepalivesCount and setTCPUserTimeout use them.
func pgConfig(v [numPgOptions]*string) (Config, error) {
	if s := v[pgKeepalives]; s != nil {
		n, err := pgParseInt(pgKeepalives, *s)
		if err != nil {
			return Config{}, err
		}
		if n == 0 {
			c := Config{Off: true}
			if err := c.Validate(); err != nil {
				return Config{}, err
			}
			return c, nil
		}
	}
	var c Config
	for _, o := range []pgOption{pgIdle, pgInterval, pgCount, pgUserTimeout} {
		s := v[o]
		if s == nil {
			continue
		}
		n, err := pgParseInt(o, *s)
		if err != nil {
			return Config{}, err
		}
		// libpq turns a negative value into 0 and passes it on.
		n = max(n, 0)
		if o == pgUserTimeout {
			c.UserTimeout = time.Duration(n) * time.Millisecond
			continue
		}
		if hi, unit := pgMax(o); pgSettable(o) && (n < 1 || n > hi) {
			return Config{}, fmt.Errorf("keepalive: invalid value %q for connection option %q: out of range 1..%d %s (libpq passes %d to setsockopt, which fails)", *s, pgKeys[o], hi, unit, n)
		}
		switch o {
		case pgIdle:
			c.Idle = time.Duration(n) * time.Second
		case pgInterval:
			c.Interval = time.Duration(n) * time.Second
		case pgCount:
			c.Count = int(n)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// pgParseInt parses s as libpq's pqParseIntParam does: an int, with blanks
// allowed before and after it and nothing else.
func pgParseInt(o pgOption, s string) (int64, error) {
	n, end, overflow := strtol(s)
	if end == 0 || overflow || n != int64(int32(n)) {
		return 0, pgInvalidInteger(o, s)
	}
	for end < len(s) && isCSpace(s[end]) {
		end++
	}
	if end != len(s) {
		return 0, pgInvalidInteger(o, s)
	}
	return n, nil
}

func pgInvalidInteger(o pgOption, s string) error {
	return fmt.Errorf("keepalive: invalid integer value %q for connection option %q", s, pgKeys[o])
}

// strtol reads a base-10 integer from the start of s as C's strtol does
// for a 64-bit long: blanks, an optional sign, digits. It returns the value
// (clamped to the long's range, with overflow set, when it does not fit)
// and the index just past the digits, or 0 if there were no digits.
func strtol(s string) (n int64, end int, overflow bool) {
	i := 0
	for i < len(s) && isCSpace(s[i]) {
		i++
	}
	neg := false
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		neg = s[i] == '-'
		i++
	}
	digits := i
	var u uint64
	for ; i < len(s) && '0' <= s[i] && s[i] <= '9'; i++ {
		d := uint64(s[i] - '0')
		if u > (math.MaxUint64-d)/10 {
			overflow = true
			continue
		}
		u = u*10 + d
	}
	if i == digits {
		return 0, 0, false
	}
	switch {
	case !neg && (overflow || u > math.MaxInt64):
		return math.MaxInt64, i, true
	case neg && (overflow || u > 1<<63):
		return math.MinInt64, i, true
	case neg && u == 1<<63:
		return math.MinInt64, i, false
	case neg:
		return -int64(u), i, false
	}
	return int64(u), i, false
}
