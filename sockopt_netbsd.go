package keepalive

import (
	"errors"
	"fmt"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// slowTick is the unit of NetBSD's keepalive options and sysctls: its TCP
// timers count slow timeouts, PR_SLOWHZ (2) a second (sys/protosw.h;
// sys/netinet/tcp_timer.h: "nticks is given in units of slow timeouts,
// typically 500 ms"). TCP_KEEPIDLE 60 means 30 seconds.
const slowTick = 500 * time.Millisecond

// NetBSD's options (tcp(4); tcp_ctloutput in sys/netinet/tcp_usrreq.c): a
// C u_int of slow ticks, stored as given. The kernel refuses zero, and
// getsockopt (NetBSD 8 and later) reports the socket's own value, which a
// new socket copies from the sysctls.
var sockopts = [numOptions]sockopt{
	optIdle:     {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: slowTick},
	optInterval: {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: slowTick},
	optCount:    {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT},
}

// maxTicks is the largest number of slow ticks the kernel arms a timer with
// without overflowing the int of clock ticks it passes to callout_schedule
// (TCP_TIMER_ARM multiplies by hz / PR_SLOWHZ).
func maxTicks() int64 { return math.MaxInt32 / max(clockHz()/2, 1) }

const noUserTimeout = "NetBSD has no per-socket limit on retransmission"

func support(o option) Support {
	switch o {
	case optKeepAlive:
		return Support{Option: "SO_KEEPALIVE", Set: true, Get: true}
	case optIdle:
		return Support{Option: "TCP_KEEPIDLE", Set: true, Get: true, Unit: slowTick, Min: 1, Max: maxTicks()}
	case optInterval:
		return Support{Option: "TCP_KEEPINTVL", Set: true, Get: true, Unit: slowTick, Min: 1, Max: maxTicks()}
	case optCount:
		return Support{Option: "TCP_KEEPCNT", Set: true, Get: true, Min: 1, Max: math.MaxInt32}
	}
	return Support{whySet: noUserTimeout, whyGet: noUserTimeout}
}

// acceptInherits is false: NetBSD's syn_cache_get gives an accepted socket
// the system's values, not the listening socket's.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads the sysctls.
const defaultsReadable = true

func getOption(fd uintptr, o option) (int64, error) {
	switch o {
	case optKeepAlive:
		return getKeepAlive(fd)
	case optUserTimeout:
		return 0, unsupported("reading UserTimeout", noUserTimeout)
	}
	v, err := sockopts[o].get(fd)
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

// keepAliveForced is false: NetBSD has no always_keepalive sysctl, and
// probes only the connections whose SO_KEEPALIVE is on.
func keepAliveForced() (bool, error) { return false, nil }

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
