package sockopts

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// tcpMaxUnackTime is TCP_MAXUNACKTIME (<netinet/tcp.h>, FreeBSD 14 and
// later), which x/sys lacks on most architectures.
const tcpMaxUnackTime = 0x44

// read reads FreeBSD's options (tcp(4)), in seconds; getsockopt reports
// the value in force, the socket's or the sysctl's. A kernel without
// TCP_MAXUNACKTIME (ENOPROTOOPT) has no user timeout: zero.
func read(g *getter) Values {
	v := Values{
		KeepAlive: g.keepAlive(),
		Idle:      time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second,
		Interval:  time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second,
		Count:     g.int(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
	}
	n, err := unix.GetsockoptInt(g.fd, unix.IPPROTO_TCP, tcpMaxUnackTime)
	switch {
	case errors.Is(err, unix.ENOPROTOOPT):
	case err != nil:
		g.errs = append(g.errs, err)
	default:
		v.UserTimeout = time.Duration(n) * time.Second
	}
	return v
}
