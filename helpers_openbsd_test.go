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
// reports c: on OpenBSD internal/sockopts reads SO_KEEPALIVE only, the one
// keepalive option a socket has.
func kernelOf(_ testing.TB, c keepalive.Config) kernel {
	return kernel{KeepAlive: !c.Off}
}
