package keepalive_test

import (
	"errors"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
)

// hostFacts reads the clock rate and net.inet.tcp.always_keepalive, and
// asks a new socket for TCP_MAXUNACKTIME (0x44, FreeBSD 14 and later).
func hostFacts() (host, error) {
	var h host
	var err error
	if h.hz, err = clockRate(); err != nil {
		return host{}, err
	}
	if h.alwaysKeepAlive, err = alwaysKeepAlive(); err != nil {
		return host{}, err
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return host{}, err
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, 0x44)
	if err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return host{}, err
	}
	h.maxUnackTime = err == nil
	return h, nil
}

// kernelOf returns what readSocket reports for a socket of which Get
// reports c: internal/sockopts reads TCP_KEEPIDLE, TCP_KEEPINTVL,
// TCP_KEEPCNT and TCP_MAXUNACKTIME (zero where the kernel lacks it) on
// FreeBSD, and SO_KEEPALIVE as the socket holds it.
func kernelOf(_ testing.TB, c keepalive.Config) kernel {
	return kernel{KeepAlive: !c.Off, Idle: c.Idle, Interval: c.Interval, Count: c.Count, UserTimeout: c.UserTimeout}
}
