package sockopts

import (
	"time"

	"golang.org/x/sys/unix"
)

// read reads DragonFly's options (tcp(4)), in seconds since DragonFly 5.8.
// DragonFly has no user timeout.
func read(g *getter) Values {
	return Values{
		KeepAlive: g.keepAlive(),
		Idle:      time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * time.Second,
		Interval:  time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * time.Second,
		Count:     g.int(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
	}
}
