package keepalive

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// SystemDefaults returns the values a socket has when it sets none itself:
// on Linux the sysctls net.ipv4.tcp_keepalive_time, tcp_keepalive_intvl and
// tcp_keepalive_probes of the caller's network namespace. UserTimeout is
// zero: by default there is none. Elsewhere it returns an error wrapping
// [errors.ErrUnsupported].
func SystemDefaults() (Config, error) {
	var v [numOptions]int
	for o, path := range sysctls {
		if o == int(optKeepAlive) || o == int(optUserTimeout) {
			continue
		}
		if path == "" {
			return Config{}, fmt.Errorf("keepalive: system defaults are not readable on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("keepalive: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return Config{}, fmt.Errorf("keepalive: %s: %w", path, err)
		}
		v[o] = n
	}
	return Config{
		Idle:     time.Duration(v[optIdle]) * time.Second,
		Interval: time.Duration(v[optInterval]) * time.Second,
		Count:    v[optCount],
	}, nil
}

// orDefaults returns c with each zero field taken from sys.
func (c Config) orDefaults(sys Config) Config {
	if c.Idle == 0 {
		c.Idle = sys.Idle
	}
	if c.Interval == 0 {
		c.Interval = sys.Interval
	}
	if c.Count == 0 {
		c.Count = sys.Count
	}
	if c.UserTimeout == 0 {
		c.UserTimeout = sys.UserTimeout
	}
	return c
}

// DetectionTime returns the longest time a connection with settings c takes
// to declare an idle connection dead once its peer has vanished, counted
// from the last segment the peer sent. Each zero field of c takes its value
// from sys, usually the result of [SystemDefaults].
//
// Without a UserTimeout that is Idle + Interval*Count: the first probe goes
// out after Idle, and the connection is dropped when Count probes have gone
// unanswered. With one, the kernel ignores Count and drops the connection at
// the first probe timer that finds UserTimeout passed and a probe
// unanswered: Idle + Interval*k for the least k of at least 1 that reaches
// UserTimeout (Linux net/ipv4/tcp_timer.c, tcp_keepalive_timer).
func (c Config) DetectionTime(sys Config) time.Duration {
	c = c.orDefaults(sys)
	if c.UserTimeout == 0 {
		return c.Idle + c.Interval*time.Duration(c.Count)
	}
	k := time.Duration(1)
	if c.Interval > 0 && c.UserTimeout > c.Idle+c.Interval {
		k = (c.UserTimeout - c.Idle + c.Interval - 1) / c.Interval
	}
	return c.Idle + c.Interval*k
}

// WithUserTimeout returns c with UserTimeout set to Idle + Interval*Count,
// each zero field of c taken from sys: the usual pairing, under which data
// left unacknowledged is given up on as soon as an idle connection's probes
// would give up on a silent peer. Validate the result: with large values
// the sum can exceed the kernel's limit for UserTimeout.
func (c Config) WithUserTimeout(sys Config) Config {
	f := c.orDefaults(sys)
	c.UserTimeout = f.Idle + f.Interval*time.Duration(f.Count)
	return c
}
