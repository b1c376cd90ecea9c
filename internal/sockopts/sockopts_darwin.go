package sockopts

import (
	"time"

	"golang.org/x/sys/unix"
)

// read reads the options of macOS and iOS (<netinet/tcp.h>), in seconds;
// getsockopt reports the value in force, the socket's or the system's.
func read(g *getter) Values {
	return Values{
		KeepAlive:   g.keepAlive(),
		Idle:        time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPALIVE)) * time.Second,
		Interval:    time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second,
		Count:       g.int(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
		UserTimeout: time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_RXT_CONNDROPTIME)) * time.Second,
	}
}
