//go:build js || plan9 || wasip1

package keepalive

import (
	"fmt"
	"runtime"
	"time"
)

// These platforms have no socket option this package can reach, so every
// field is unsupported, turning keepalive on included. Plan 9's connections
// are files: Go's net package turns keepalive on by writing "keepalive" to a
// connection's ctl file, but cannot turn it off (TCPConn.SetKeepAlive(false)
// does nothing) or read it, and syscall.RawConn.Control, through which this
// package reaches every socket, is not implemented there. The net package of
// js/wasm connects only within the program, and on js/wasm and wasip1 every
// socket option, SO_KEEPALIVE too, fails with ENOPROTOOPT
// (net/sockopt_fake.go); WASI preview 1 has no setsockopt.

// none is the table: no option, for the reason noOptions gives.
var none = func() [numOptions]sockopt {
	why := noOptions()
	var t [numOptions]sockopt
	for o := range t {
		t[o] = sockopt{noSet: why, noGet: why}
	}
	return t
}()

func options() *[numOptions]sockopt { return &none }

// noOptions says why this platform has no keepalive options.
func noOptions() string {
	switch runtime.GOOS {
	case "plan9":
		return "Plan 9 has no socket options: a connection's ctl file turns keepalive on but not off, " +
			"and syscall.RawConn.Control is not implemented"
	case "wasip1":
		return "WASI preview 1 has no socket options"
	}
	return "js/wasm has no socket options: its net package connects only within the program"
}

const (
	acceptInherits        = false
	defaultsReadable      = false
	userTimeoutEndsProbes = false
)

// Validate refuses every Config here, and Get and Disable fail before they
// reach a socket, so the functions below answer only for completeness.

func setOption(fd uintptr, o option, c Config) error {
	return unsupported("setting "+optionField[o], noOptions())
}

func getOption(fd uintptr, o option) (int64, error) {
	return 0, unsupported("reading "+optionField[o], noOptions())
}

func checkCombination(Config) *FieldError { return nil }

func checkTCP(uintptr) error { return unsupported("telling a TCP socket", noOptions()) }

func systemDefaults() (Config, error) {
	return Config{}, fmt.Errorf("keepalive: %w", unsupported("reading the system defaults", noOptions()))
}

func retransmitLimit() (time.Duration, error) {
	return 0, fmt.Errorf("keepalive: %w", unsupported("reading the retransmission timeout", noOptions()))
}

func sysctlConf(Config) (string, error) {
	return "", fmt.Errorf("keepalive: %w", unsupported("writing sysctl lines", noOptions()))
}

func backoffLimit(time.Duration) (time.Duration, bool) { return 0, false }
