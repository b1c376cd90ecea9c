package keepalive

import (
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// slowTick is the unit of NetBSD's keepalive options and sysctls: its TCP
// timers count slow timeouts, PR_SLOWHZ (2) a second (sys/protosw.h;
// sys/netinet/tcp_timer.h: "nticks is given in units of slow timeouts,
// typically 500 ms"). TCP_KEEPIDLE 60 means 30 seconds.
const slowTick = 500 * time.Millisecond

// options returns NetBSD's options (tcp(4); tcp_ctloutput in
// sys/netinet/tcp_usrreq.c): a C u_int of slow ticks, stored as given, at
// most maxTicks. The kernel refuses zero, so a zero field is written as the
// system default's value, which a new socket copies from the sysctls; and
// getsockopt (NetBSD 8 and later) reports the socket's own value. NetBSD has
// no user timeout.
var options = sync.OnceValue(func() *[numOptions]sockopt {
	ticks := maxTicks()
	return &[numOptions]sockopt{
		optIdle:        {name: "TCP_KEEPIDLE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: slowTick, min: 1, max: ticks},
		optInterval:    {name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: slowTick, min: 1, max: ticks},
		optCount:       {name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT, min: 1, max: math.MaxInt32},
		optUserTimeout: {noSet: noUserTimeout, noGet: noUserTimeout},
		optKeepAlive:   soKeepAlive,
	}
})

// maxTicks is the largest number of slow ticks the kernel arms a timer with
// without overflowing the int of clock ticks it passes to callout_schedule
// (TCP_TIMER_ARM multiplies by hz / PR_SLOWHZ).
func maxTicks() int64 { return math.MaxInt32 / max(clockHz()/2, 1) }

const noUserTimeout = "NetBSD has no per-socket limit on retransmission"

func setOption(fd uintptr, o option, c Config) error {
	if o == optKeepAlive {
		return setKeepAlive(fd, !c.Off)
	}
	return options()[o].set(fd, c.get(o))
}

func getOption(fd uintptr, o option) (int64, error) {
	if o == optKeepAlive {
		return getKeepAlive(fd)
	}
	v, err := options()[o].get(fd)
	if errors.Is(err, unix.ENOPROTOOPT) {
		return 0, fmt.Errorf("%w: %w", unsupported("reading "+optionField[o]+" back", "NetBSD reads the keepalive options back from version 8 on"), err)
	}
	return v, err
}

func checkCombination(c Config) *FieldError {
	// The kernel adds Idle + Interval*Count (t_keepidle + t_maxidle) and
	// arms a timer with Interval*Count in FIN_WAIT_2: keep the sum within
	// what a timer takes.
	return checkSpan(c, time.Duration(maxTicks())*slowTick, systemDefaults)
}

// checkTCP tells TCP by type and family: NetBSD has no SO_PROTOCOL.
func checkTCP(fd uintptr) error { return checkStreamInet(fd) }

// sysctls holds the system defaults, in slow ticks for the durations
// ("Allowed connection idle ticks before a keepalive probe is sent").
var sysctls = []sysctlDefault{
	{optIdle, "net.inet.tcp.keepidle", slowTick, false},
	{optInterval, "net.inet.tcp.keepintvl", slowTick, false},
	{optCount, "net.inet.tcp.keepcnt", 1, false},
}

func systemDefaults() (Config, error) {
	// slowTick stands for 1/PR_SLOWHZ, which the kernel reports.
	if hz, err := sysctlInt("net.inet.tcp.slowhz"); err == nil && hz != int64(time.Second/slowTick) {
		return Config{}, fmt.Errorf("keepalive: net.inet.tcp.slowhz is %d, not the %d this package counts in", hz, time.Second/slowTick)
	}
	return readSysctls(sysctls)
}
