package sockopts

import (
	"time"

	"golang.org/x/sys/unix"
)

// slowTick is the unit of NetBSD's keepalive options: 1/PR_SLOWHZ
// (sys/protosw.h), half a second.
const slowTick = 500 * time.Millisecond

// read reads NetBSD's options (tcp(4); getsockopt from NetBSD 8), in slow
// ticks. NetBSD has no user timeout.
func read(g *getter) Values {
	return Values{
		KeepAlive: g.keepAlive(),
		Idle:      time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPIDLE)) * slowTick,
		Interval:  time.Duration(g.int(unix.IPPROTO_TCP, unix.TCP_KEEPINTVL)) * slowTick,
		Count:     g.int(unix.IPPROTO_TCP, unix.TCP_KEEPCNT),
	}
}
