package keepalive_test

import (
	"errors"
	"math"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// This file holds what each platform does with a Config, as its headers,
// sources and documentation say: the one table every test takes its
// expectations from. TestPlatform checks Platform against it; the other
// tests derive their cases from Platform, so a platform's limits are
// stated here once.

// host is what the tests find out about the running system for
// themselves, with their own system calls (helpers_GOOS_test.go), where a
// platform's answers depend on it.
type host struct {
	// times, count and maxRT report that Windows sets TCP_KEEPIDLE and
	// TCP_KEEPINTVL (Windows 10 1709 and later), TCP_KEEPCNT (1703 and
	// later) and TCP_MAXRT (not Wine).
	times, count, maxRT bool

	// intervalCount reports that Oracle Solaris has TCP_KEEPINTVL and
	// TCP_KEEPCNT (11.4 and later).
	intervalCount bool

	// maxUnackTime reports that FreeBSD has TCP_MAXUNACKTIME (14 and
	// later).
	maxUnackTime bool

	// hz is the kernel's clock rate (kern.clockrate) on FreeBSD, NetBSD
	// and DragonFly, whose TCP timers count its ticks.
	hz int64

	// alwaysKeepAlive reports that net.inet.tcp.always_keepalive is 1
	// (macOS, FreeBSD, DragonFly and OpenBSD have it; FreeBSD and DragonFly
	// set it by default): the kernel probes every connection, and
	// keepalive cannot be turned off.
	alwaysKeepAlive bool
}

var hostOnce = sync.OnceValues(hostFacts)

// thisHost returns what the tests found out about the running system.
func thisHost(t testing.TB) host {
	t.Helper()
	h, err := hostOnce()
	require.NoError(t, err, "finding out about this system")
	return h
}

// field is what a platform does with one field of a Config.
type field struct {
	keepalive.FieldSupport

	// why is the reason the package gives where Set is false, or where
	// Set is true and Get false: the text after "FIELD is not supported
	// on GOOS/GOARCH: " (or "reading FIELD back is not supported ...").
	why string
}

// platform is what a platform does with a Config.
type platform struct {
	Idle, Interval, Count, UserTimeout, Off field
	DefaultsReadable, AcceptInherits        bool

	// span is the longest Idle + Interval*Count, each zero field at the
	// system default, where the kernel adds them in a bounded counter
	// (macOS and the BSDs); zero where there is no such rule.
	span time.Duration

	// pair reports that Interval and Count must be set together or not
	// at all (illumos, Oracle Solaris 11.4).
	pair bool

	// userTimeoutEndsProbes reports that a user timeout ends idle
	// probing instead of Count (Linux), which DetectionTime follows.
	userTimeoutEndsProbes bool

	// keepAliveForced reports that the system probes every connection
	// whatever SO_KEEPALIVE says: turning keepalive off fails.
	keepAliveForced bool

	// goDialed is the Config Get reports for a socket the standard library
	// set its own keepalive on (15s, 15s, 9), each zero field at the
	// system default, where that is established; nil elsewhere.
	goDialed *keepalive.Config
}

// fields returns the platform's fields by name, in the order Validate
// reports them.
func (p platform) fields() []namedField {
	return []namedField{{"Idle", p.Idle}, {"Interval", p.Interval}, {"Count", p.Count}, {"UserTimeout", p.UserTimeout}}
}

type namedField struct {
	name string
	field
}

// The pieces of the table.
var (
	soKeepAlive = field{FieldSupport: keepalive.FieldSupport{Option: "SO_KEEPALIVE", Settable: true, Readable: true}}
	goDefaults  = keepalive.Config{Idle: 15 * time.Second, Interval: 15 * time.Second, Count: 9}
)

// seconds is a field set and read in whole seconds from least to largest.
func seconds(option string, least, largest int64) field {
	return field{FieldSupport: keepalive.FieldSupport{Option: option, Settable: true, Readable: true, Unit: time.Second, Min: least, Max: largest}}
}

// count is a Count set and read from 1 to largest.
func count(option string, largest int64) field {
	return field{FieldSupport: keepalive.FieldSupport{Option: option, Settable: true, Readable: true, Min: 1, Max: largest}}
}

// none is a field the platform cannot set, for the reason why.
func none(option, why string) field {
	return field{FieldSupport: keepalive.FieldSupport{Option: option}, why: why}
}

// platforms is the table: for each GOOS, what it does with a Config on the
// host h.
var platforms = map[string]func(h host) platform{
	// Linux: include/net/tcp.h (MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL,
	// MAX_TCP_KEEPCNT), man 7 tcp; accepted sockets copy the listener's
	// options (net/ipv4/tcp_minisocks.c).
	"linux": func(host) platform {
		return platform{
			Idle:                  seconds("TCP_KEEPIDLE", 1, 32767),
			Interval:              seconds("TCP_KEEPINTVL", 1, 32767),
			Count:                 count("TCP_KEEPCNT", 127),
			UserTimeout:           field{FieldSupport: keepalive.FieldSupport{Option: "TCP_USER_TIMEOUT", Settable: true, Readable: true, Unit: time.Millisecond, Min: 1, Max: math.MaxInt32}},
			Off:                   soKeepAlive,
			DefaultsReadable:      true,
			AcceptInherits:        true,
			userTimeoutEndsProbes: true,
			goDialed:              &goDefaults,
		}
	},

	// macOS and iOS (xnu tcp_usrreq.c): seconds the kernel multiplies
	// by 1000 into an int of milliseconds; Idle + Interval*Count in
	// unsigned 32-bit milliseconds.
	"darwin": darwin,
	"ios":    darwin,

	// FreeBSD (tcp_usrreq.c): seconds in a u_int the kernel multiplies
	// by hz (at most UINT_MAX/hz, read back in an int); the sum in
	// unsigned 32-bit ticks. TCP_MAXUNACKTIME since FreeBSD 14.
	"freebsd": func(h host) platform {
		largest := min(math.MaxUint32/h.hz, math.MaxInt32)
		p := platform{
			Idle:             seconds("TCP_KEEPIDLE", 1, largest),
			Interval:         seconds("TCP_KEEPINTVL", 1, largest),
			Count:            count("TCP_KEEPCNT", math.MaxInt32),
			UserTimeout:      seconds("TCP_MAXUNACKTIME", 1, largest),
			Off:              soKeepAlive,
			DefaultsReadable: true,
			span:             math.MaxUint32 * time.Second / time.Duration(h.hz),
			keepAliveForced:  h.alwaysKeepAlive,
			goDialed:         &goDefaults,
		}
		if !h.maxUnackTime {
			p.UserTimeout = none("TCP_MAXUNACKTIME", "the kernel has no TCP_MAXUNACKTIME, which FreeBSD 14 added")
		}
		return p
	},

	// NetBSD (tcp_usrreq.c, tcp_timer.h): slow ticks of 500ms, at most
	// INT_MAX/(hz/2) of them; no user timeout, no always_keepalive.
	"netbsd": func(h host) platform {
		ticks := int64(math.MaxInt32) / max(h.hz/2, 1)
		half := func(option string) field {
			return field{FieldSupport: keepalive.FieldSupport{Option: option, Settable: true, Readable: true, Unit: 500 * time.Millisecond, Min: 1, Max: ticks}}
		}
		return platform{
			Idle:             half("TCP_KEEPIDLE"),
			Interval:         half("TCP_KEEPINTVL"),
			Count:            count("TCP_KEEPCNT", math.MaxInt32),
			UserTimeout:      none("", "NetBSD has no per-socket limit on retransmission"),
			Off:              soKeepAlive,
			DefaultsReadable: true,
			span:             time.Duration(ticks) * 500 * time.Millisecond,
			// NetBSD has no always_keepalive; should it have one, the
			// tests see it.
			keepAliveForced: h.alwaysKeepAlive,
		}
	},

	// DragonFly 5.8 and later (tcp_usrreq.c): seconds in an int the
	// kernel multiplies by hz; the sum in int ticks; no user timeout.
	"dragonfly": func(h host) platform {
		largest := math.MaxInt32 / h.hz
		return platform{
			Idle:             seconds("TCP_KEEPIDLE", 1, largest),
			Interval:         seconds("TCP_KEEPINTVL", 1, largest),
			Count:            count("TCP_KEEPCNT", math.MaxInt32),
			UserTimeout:      none("", "DragonFly has no per-socket limit on retransmission"),
			Off:              soKeepAlive,
			DefaultsReadable: true,
			span:             math.MaxInt32 * time.Second / time.Duration(h.hz),
			keepAliveForced:  h.alwaysKeepAlive,
		}
	},

	// OpenBSD: SO_KEEPALIVE only; the timing is the machine's.
	"openbsd": func(h host) platform {
		timing := "OpenBSD sets keepalive timing for the whole machine only (sysctl net.inet.tcp.keepidle and keepintvl; the probe count is fixed at 8)"
		return platform{
			Idle:             none("", timing),
			Interval:         none("", timing),
			Count:            none("", timing),
			UserTimeout:      none("", "OpenBSD has no per-socket limit on retransmission"),
			Off:              soKeepAlive,
			DefaultsReadable: true,
			keepAliveForced:  h.alwaysKeepAlive,
		}
	},

	// Windows: TCP_KEEPIDLE and TCP_KEEPINTVL in seconds (1709 and
	// later; 32767s, the largest Wine passes on), TCP_KEEPCNT at most 255
	// (1703 and later), TCP_MAXRT in seconds; before them, and under
	// Wine, SIO_KEEPALIVE_VALS, which cannot be read back, and 10
	// probes.
	"windows": func(h host) platform {
		p := platform{
			Idle:             seconds("TCP_KEEPIDLE", 1, 32767),
			Interval:         seconds("TCP_KEEPINTVL", 1, 32767),
			Count:            count("TCP_KEEPCNT", 255),
			UserTimeout:      seconds("TCP_MAXRT", 1, math.MaxInt32/1000),
			Off:              soKeepAlive,
			DefaultsReadable: true,
		}
		if !h.times {
			const why = "the idle time and interval are set with SIO_KEEPALIVE_VALS, which cannot be read back; " +
				"this system refuses TCP_KEEPIDLE and TCP_KEEPINTVL (WSAENOPROTOOPT), as Windows before 10 version 1709 and Wine do"
			for _, f := range []*field{&p.Idle, &p.Interval} {
				f.Option, f.Readable, f.why = "SIO_KEEPALIVE_VALS", false, why
			}
		}
		if !h.count {
			p.Count = none("", "this system refuses TCP_KEEPCNT (WSAENOPROTOOPT), as Windows before 10 version 1703 and Wine do; "+
				"Windows sends 10 probes, which cannot be changed")
		}
		if !h.maxRT {
			p.UserTimeout = none("", "this system refuses TCP_MAXRT (WSAENOPROTOOPT), as Wine does (Windows has it since Vista)")
		}
		if h.times && h.count {
			p.goDialed = &goDefaults
		}
		return p
	},

	// illumos (tcp_opt_data.c): TCP_KEEPALIVE_THRESHOLD in milliseconds
	// from 1s to 10 days, TCP_KEEPINTVL in seconds within the
	// retransmission timeout's bounds (1s..60s), Interval*Count the
	// keepalive abort threshold (an int of milliseconds),
	// TCP_ABORT_THRESHOLD in milliseconds.
	"illumos": func(host) platform {
		return sun(1000, 1, 60)
	},

	// Oracle Solaris 11.4 (tcp(4P)): as illumos, from 10s, the interval
	// up to 10 days; before 11.4 neither TCP_KEEPINTVL nor TCP_KEEPCNT.
	"solaris": func(h host) platform {
		if h.intervalCount {
			return sun(10000, 10, 864000)
		}
		p := sun(10000, 10, 864000)
		why := "Solaris before 11.4 has neither TCP_KEEPINTVL nor TCP_KEEPCNT: probes back off " +
			"from the retransmission timeout until the keepalive abort threshold (TCP_KEEPALIVE_ABORT_THRESHOLD) has passed"
		p.Interval = field{FieldSupport: keepalive.FieldSupport{Option: "TCP_KEEPALIVE_ABORT_THRESHOLD", Readable: true}, why: why}
		p.Count = p.Interval
		p.pair = false
		return p
	},

	// AIX: TCP_KEEPIDLE and TCP_KEEPINTVL in seconds, TCP_KEEPCNT, with
	// Linux's ranges; no user timeout; the defaults unreadable.
	"aix": func(host) platform {
		return platform{
			Idle:        seconds("TCP_KEEPIDLE", 1, 32767),
			Interval:    seconds("TCP_KEEPINTVL", 1, 32767),
			Count:       count("TCP_KEEPCNT", 127),
			UserTimeout: none("", "AIX has no socket option that bounds how long sent data may stay unacknowledged"),
			Off:         soKeepAlive,
		}
	},

	// Plan 9, js/wasm and wasip1: no socket options at all.
	"plan9": noOptions("Plan 9 has no socket options: a connection's ctl file turns keepalive on but not off, " +
		"and syscall.RawConn.Control is not implemented"),
	"js":     noOptions("js/wasm has no socket options: its net package connects only within the program"),
	"wasip1": noOptions("WASI preview 1 has no socket options"),
}

func darwin(h host) platform {
	const largest = math.MaxInt32 / 1000
	return platform{
		Idle:             seconds("TCP_KEEPALIVE", 1, largest),
		Interval:         seconds("TCP_KEEPINTVL", 1, largest),
		Count:            count("TCP_KEEPCNT", math.MaxInt32),
		UserTimeout:      seconds("TCP_RXT_CONNDROPTIME", 1, largest),
		Off:              soKeepAlive,
		DefaultsReadable: true,
		span:             math.MaxUint32 * time.Millisecond,
		keepAliveForced:  h.alwaysKeepAlive,
		goDialed:         &goDefaults,
	}
}

// sun is illumos or Oracle Solaris 11.4, with the least idle time in
// milliseconds and the interval's range in seconds.
func sun(idleMinMs, intervalMin, intervalMax int64) platform {
	const maxAbort = math.MaxInt32 // milliseconds
	return platform{
		Idle:             field{FieldSupport: keepalive.FieldSupport{Option: "TCP_KEEPALIVE_THRESHOLD", Settable: true, Readable: true, Unit: time.Millisecond, Min: idleMinMs, Max: 864000000}},
		Interval:         seconds("TCP_KEEPINTVL", intervalMin, intervalMax),
		Count:            count("TCP_KEEPCNT", maxAbort/(intervalMin*1000)),
		UserTimeout:      field{FieldSupport: keepalive.FieldSupport{Option: "TCP_ABORT_THRESHOLD", Settable: true, Readable: true, Unit: time.Millisecond, Min: 1, Max: maxAbort}},
		Off:              soKeepAlive,
		DefaultsReadable: true,
		pair:             true,
	}
}

func noOptions(why string) func(host) platform {
	return func(host) platform {
		return platform{
			Idle:        none("", why),
			Interval:    none("", why),
			Count:       none("", why),
			UserTimeout: none("", why),
			Off:         none("", why),
		}
	}
}

// wantPlatform returns the table's entry for the running platform.
func wantPlatform(t testing.TB) platform {
	t.Helper()
	entry, ok := platforms[runtime.GOOS]
	require.True(t, ok, "the table has no entry for %s", runtime.GOOS)
	return entry(thisHost(t))
}

// unsupportedText is the message of an error for what, which the platform
// cannot do, for the reason why.
func unsupportedText(what, why string) string {
	return what + " is not supported on " + runtime.GOOS + "/" + runtime.GOARCH + ": " + why
}

// TestPlatform checks Platform against the table, and each reason the
// table gives for a field the platform cannot set against the error that
// Validate returns for it.
func TestPlatform(t *testing.T) {
	h := thisHost(t)
	t.Logf("%s/%s: %+v", runtime.GOOS, runtime.GOARCH, h)
	want, got := wantPlatform(t), keepalive.Platform()
	for _, f := range []struct {
		name string
		want field
		got  keepalive.FieldSupport
	}{
		{"Idle", want.Idle, got.Idle},
		{"Interval", want.Interval, got.Interval},
		{"Count", want.Count, got.Count},
		{"UserTimeout", want.UserTimeout, got.UserTimeout},
		{"Off", want.Off, got.Off},
	} {
		t.Run(f.name, func(t *testing.T) {
			w, g := f.want.FieldSupport, f.got
			// The unexported reasons are checked through the errors
			// they make.
			assert.Equal(t,
				[]any{w.Option, w.Settable, w.Readable, w.Unit, w.Min, w.Max},
				[]any{g.Option, g.Settable, g.Readable, g.Unit, g.Min, g.Max},
				"Option, Set, Get, Unit, Min, Max")
			t.Logf("%+v", g)

			// What every answer must hold, whatever the platform.
			switch {
			case !g.Settable:
				assert.Equal(t, []int64{0, 0, 0}, []int64{int64(g.Unit), g.Min, g.Max}, "a field that cannot be set has no range")
			case f.name == "Off":
				assert.Zero(t, g.Unit+time.Duration(g.Min+g.Max), "Off has no range")
			default:
				assert.GreaterOrEqual(t, g.Min, int64(1), "Min")
				assert.GreaterOrEqual(t, g.Max, g.Min, "Max")
				assert.Equal(t, f.name == "Count", g.Unit == 0, "Unit is zero for Count only")
			}
			if f.want.Settable {
				return
			}
			c := keepalive.Config{}
			what := f.name
			switch f.name {
			case "Idle":
				c.Idle = time.Second
			case "Interval":
				c.Interval = time.Second
			case "Count":
				c.Count = 1
			case "UserTimeout":
				c.UserTimeout = time.Second
			case "Off":
				what = "turning keepalive on and off"
			}
			err := c.Validate()
			assert.ErrorIs(t, err, errors.ErrUnsupported)
			assert.ErrorContains(t, err, unsupportedText(what, f.want.why))
		})
	}
	assert.Equal(t, want.DefaultsReadable, got.DefaultsReadable, "DefaultsReadable")
	assert.Equal(t, want.AcceptInherits, got.AcceptInherits, "AcceptInherits")
	_, err := keepalive.SystemDefaults()
	if want.DefaultsReadable {
		assert.NoError(t, err, "SystemDefaults")
	} else {
		assert.ErrorIs(t, err, errors.ErrUnsupported, "SystemDefaults")
	}
}
