package keepalive

import (
	"time"

	"golang.org/x/sys/unix"
)

// illumos has TCP_KEEPINTVL (0x24, in seconds) and TCP_KEEPCNT (0x23), the
// numbers x/sys takes from illumos <netinet/tcp.h>. tcp_opt_data.c takes an
// interval only within the socket's retransmission timeout bounds, by
// default 400 ms to 60 s (ipadm properties _rexmit_interval_min and
// _rexmit_interval_max): whole seconds from 1 to 60. TCP_KEEPALIVE_THRESHOLD
// takes 1 s to 10 days (the range of _keepalive_interval; 10 s until 2015,
// as tcp(4P) still says).
var illumos = sunTCP{
	idleMinMs: 1000,
	interval:  sockopt{name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second, min: 1, max: 60, zeroIsDefault: true},
	count:     sockopt{name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT, min: 1, zeroIsDefault: true},
}

func sun() *sunTCP { return &illumos }
