package keepalive

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The keys of the text form, in the order String writes them.
const (
	keyIdle        = "idle"
	keyInterval    = "interval"
	keyCount       = "count"
	keyUserTimeout = "user-timeout"
)

var textKeys = [...]string{keyIdle, keyInterval, keyCount, keyUserTimeout}

// textOff is the item that turns keepalive off.
const textOff = "off"

const validKeys = "valid keys: " + keyIdle + ", " + keyInterval + ", " + keyCount + ", " + keyUserTimeout + ", and the word " + textOff

// ParseConfig parses the text form of a Config: comma-separated key=value
// pairs with the keys idle, interval, count and user-timeout, as in
//
//	idle=60s,interval=5s,count=3,user-timeout=75s
//
// and the word off, which turns keepalive off (Off true), alone or with the
// values that stay on the socket for when keepalive is turned on again:
//
//	off
//	off,user-timeout=30s
//
// Durations are in the syntax of [time.ParseDuration] ("60s", "1m30s",
// "1500ms"); count is a decimal integer. A key may be left out, which
// leaves that field zero (the system default), and may appear at most once.
// Spaces around keys, values and commas are ignored. The empty string is the
// zero Config.
//
// The result is validated: ParseConfig returns the error of
// [Config.Validate] for values the kernel cannot hold. Any other error names
// the key or value at fault and lists the valid keys.
func ParseConfig(s string) (Config, error) {
	var c Config
	if strings.TrimSpace(s) == "" {
		if err := c.Validate(); err != nil {
			return Config{}, err
		}
		return c, nil
	}
	var seen [len(textKeys)]bool
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		key, value, ok := strings.Cut(item, "=")
		if !ok && item == textOff {
			if c.Off {
				return Config{}, fmt.Errorf("keepalive: duplicate %q", textOff)
			}
			c.Off = true
			continue
		}
		if !ok {
			if item == "" {
				return Config{}, fmt.Errorf("keepalive: empty item in %q (want key=value pairs separated by commas; %s)", s, validKeys)
			}
			return Config{}, fmt.Errorf("keepalive: %q is not key=value (%s)", item, validKeys)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		i := slices.Index(textKeys[:], key)
		if i < 0 {
			return Config{}, fmt.Errorf("keepalive: unknown key %q (%s)", key, validKeys)
		}
		if seen[i] {
			return Config{}, fmt.Errorf("keepalive: duplicate key %q", key)
		}
		seen[i] = true
		var err error
		switch key {
		case keyIdle:
			c.Idle, err = parseDuration(key, value)
		case keyInterval:
			c.Interval, err = parseDuration(key, value)
		case keyCount:
			c.Count, err = parseCount(value)
		case keyUserTimeout:
			c.UserTimeout, err = parseDuration(key, value)
		}
		if err != nil {
			return Config{}, err
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func parseDuration(key, value string) (time.Duration, error) {
	d, err := time.ParseDuration(value)
	if err != nil {
		return 0, fmt.Errorf("keepalive: %s value %q is not a duration such as 60s or 1500ms: %w", key, value, err)
	}
	return d, nil
}

func parseCount(value string) (int, error) {
	n, err := strconv.Atoi(value)
	if err != nil {
		return 0, fmt.Errorf("keepalive: %s value %q is not a whole number: %w", keyCount, value, err)
	}
	return n, nil
}

// String returns c in the text form [ParseConfig] reads: "off" first when
// Off is true, then the non-zero fields as key=value pairs in the order
// idle, interval, count, user-timeout, such as
// "idle=60s,interval=5s,count=3,user-timeout=75s". A
// duration is written in whole seconds or milliseconds when it is one, and
// as [time.Duration.String] otherwise. The zero Config is the empty string.
//
// Every Config, valid or not, is written so that ParseConfig reads back the
// same values; ParseConfig then refuses an invalid one.
func (c Config) String() string {
	b := make([]byte, 0, 64)
	if c.Off {
		b = append(b, textOff...)
	}
	if c.Idle != 0 {
		b = appendDuration(appendKey(b, keyIdle), c.Idle)
	}
	if c.Interval != 0 {
		b = appendDuration(appendKey(b, keyInterval), c.Interval)
	}
	if c.Count != 0 {
		b = strconv.AppendInt(appendKey(b, keyCount), int64(c.Count), 10)
	}
	if c.UserTimeout != 0 {
		b = appendDuration(appendKey(b, keyUserTimeout), c.UserTimeout)
	}
	return string(b)
}

func appendKey(b []byte, key string) []byte {
	if len(b) > 0 {
		b = append(b, ',')
	}
	b = append(b, key...)
	return append(b, '=')
}

// appendDuration writes d as "60s" or "1500ms" when it is a whole number of
// either, as time.ParseDuration reads them, and as d.String() otherwise.
func appendDuration(b []byte, d time.Duration) []byte {
	switch {
	case d%time.Second == 0:
		return append(strconv.AppendInt(b, int64(d/time.Second), 10), 's')
	case d%time.Millisecond == 0:
		return append(strconv.AppendInt(b, int64(d/time.Millisecond), 10), "ms"...)
	default:
		return append(b, d.String()...)
	}
}

// MarshalText implements [encoding.TextMarshaler]: it returns the text form
// of [Config.String] and never fails. With [Config.UnmarshalText] it lets a
// Config be a JSON or YAML string, an environment variable, and a command
// line flag through [flag.TextVar]:
//
//	var c keepalive.Config
//	flag.TextVar(&c, "keepalive", keepalive.Config{}, "TCP keepalive, such as idle=60s,interval=5s,count=3")
func (c Config) MarshalText() ([]byte, error) {
	return []byte(c.String()), nil
}

// UnmarshalText implements [encoding.TextUnmarshaler]: it sets *c to the
// Config [ParseConfig] returns for text, validated. On error *c is left
// unchanged.
func (c *Config) UnmarshalText(text []byte) error {
	v, err := ParseConfig(string(text))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
