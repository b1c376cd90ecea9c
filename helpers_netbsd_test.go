package keepalive_test

import (
	"testing"

	"github.com/keepalive-go/keepalive"
)

// hostFacts reads the clock rate, and net.inet.tcp.always_keepalive, which
// NetBSD does not have.
func hostFacts() (host, error) {
	hz, err := clockRate()
	if err != nil {
		return host{}, err
	}
	forced, err := alwaysKeepAlive()
	return host{hz: hz, alwaysKeepAlive: forced}, err
}

// kernelOf returns what readSocket reports for a socket of which Get
// reports c: internal/sockopts reads TCP_KEEPIDLE, TCP_KEEPINTVL and
// TCP_KEEPCNT on NetBSD, which has no user timeout.
func kernelOf(_ testing.TB, c keepalive.Config) kernel {
	return kernel{KeepAlive: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count}
}
