package sockopts

import (
	"time"

	"golang.org/x/sys/unix"
)

// read reads Linux's options (man 7 tcp): seconds, and milliseconds for
// TCP_USER_TIMEOUT, which a Multipath TCP socket does not have.
func read(g *getter) Values {
	v := Values{
		KeepAlive: g.keepAlive(),
		Idle:      time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second,
		Interval:  time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second,
		Count:     g.int(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
		MPTCP:     g.int(unix.SOL_SOCKET, unix.SO_PROTOCOL) == unix.IPPROTO_MPTCP,
	}
	if !v.MPTCP {
		v.UserTimeout = time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)) * time.Millisecond
	}
	return v
}
