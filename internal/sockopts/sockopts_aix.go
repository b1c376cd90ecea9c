package sockopts

import (
	"time"

	"golang.org/x/sys/unix"
)

// Values is what getsockopt reports for a socket on AIX.
type Values struct {
	KeepAlive bool          // SO_KEEPALIVE
	Idle      time.Duration // TCP_KEEPIDLE, in seconds
	Interval  time.Duration // TCP_KEEPINTVL, in seconds
	Count     int           // TCP_KEEPCNT
}

// read reads AIX's options, in seconds.
func read(g *getter) Values {
	return Values{
		KeepAlive: g.keepAlive(),
		Idle:      time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second,
		Interval:  time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second,
		Count:     g.int(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
	}
}
