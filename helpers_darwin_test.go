package keepalive_test

import (
	"testing"

	"github.com/keepalive-go/keepalive"
)

// hostFacts reads net.inet.tcp.always_keepalive.
func hostFacts() (host, error) {
	forced, err := alwaysKeepAlive()
	return host{alwaysKeepAlive: forced}, err
}

// kernelOf returns what readSocket reports for a socket of which Get
// reports c: internal/sockopts reads TCP_KEEPALIVE, TCP_KEEPINTVL,
// TCP_KEEPCNT and TCP_RXT_CONNDROPTIME on macOS, and SO_KEEPALIVE as the
// socket holds it.
func kernelOf(_ testing.TB, c keepalive.Config) kernel {
	return kernel{KeepAlive: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
}
