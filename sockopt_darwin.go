package keepalive

import (
	"fmt"
	"math"
	"time"

	"golang.org/x/sys/unix"
)

// The options of macOS and iOS (xnu: bsd/netinet/tcp.h, and tcp_ctloutput
// in bsd/netinet/tcp_usrreq.c). The durations are seconds in a C int that
// the kernel multiplies by 1000 into milliseconds, so at most
// maxOptionSeconds. Zero puts the system's value back, live: a socket's own
// value is used only while it is non-zero (tcp_timer.h: TCP_CONN_KEEPIDLE,
// TCP_CONN_KEEPINTVL, TCP_CONN_KEEPCNT), and getsockopt reports the value in
// force, the socket's or the system's. TCP_RXT_CONNDROPTIME zero is no
// limit.
var darwin = [numOptions]sockopt{
	optIdle:        {name: "TCP_KEEPALIVE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPALIVE, unit: time.Second, min: 1, max: maxOptionSeconds, zeroIsDefault: true},
	optInterval:    {name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second, min: 1, max: maxOptionSeconds, zeroIsDefault: true},
	optCount:       {name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT, min: 1, max: math.MaxInt32, zeroIsDefault: true},
	optUserTimeout: {name: "TCP_RXT_CONNDROPTIME", level: unix.IPPROTO_TCP, opt: unix.TCP_RXT_CONNDROPTIME, unit: time.Second, min: 1, max: maxOptionSeconds, zeroIsDefault: true},
	optKeepAlive:   soKeepAlive,
}

func options() *[numOptions]sockopt { return &darwin }

// maxOptionSeconds is the largest number of seconds the kernel multiplies
// into milliseconds without overflowing its int (and without upsetting its
// timers, which compare millisecond times as signed 32-bit differences).
const maxOptionSeconds = math.MaxInt32 / 1000

// maxSpan is the longest Idle + Interval*Count: the kernel adds them in
// unsigned 32-bit milliseconds to decide when a silent peer is dead
// (tcp_timer.c, TCPT_KEEP), and a larger sum would wrap.
const maxSpan = math.MaxUint32 * time.Millisecond

func setOption(fd uintptr, o option, c Config) error {
	if o != optKeepAlive {
		return darwin[o].set(fd, c.get(o))
	}
	was, err := soKeepAlive.get(fd)
	if err != nil {
		return err
	}
	if err := setKeepAlive(fd, !c.Off); err != nil || c.Off || c.Idle == 0 || was != 0 {
		return err
	}
	// The kernel uses a socket's own idle time only while SO_KEEPALIVE is
	// on, and turning SO_KEEPALIVE on does not re-arm the keepalive timer,
	// which an established connection armed with the system's idle time
	// while it was off: write the idle time again, which re-arms it.
	if err := darwin[optIdle].set(fd, int64(c.Idle)); err != nil {
		return fmt.Errorf("TCP_KEEPALIVE again: %w", err)
	}
	return nil
}

func getOption(fd uintptr, o option) (int64, error) {
	if o == optKeepAlive {
		return getKeepAlive(fd)
	}
	return darwin[o].get(fd)
}

func checkCombination(c Config) *FieldError {
	return checkSpan(c, maxSpan, systemDefaults)
}

// checkTCP tells TCP by type and family: xnu has no SO_PROTOCOL, and a
// getsockopt at level IPPROTO_TCP does not tell either, since a unix
// domain socket answers TCP_NODELAY (uipc_ctloutput ignores the level, and
// LOCAL_PEERCRED has the same number).
func checkTCP(fd uintptr) error { return checkStreamInet(fd) }

// sysctls holds the system defaults, in milliseconds for the durations
// (tcp_timer.c: sysctl_msec_to_ticks). By default there is no
// TCP_RXT_CONNDROPTIME.
var sysctls = []sysctlDefault{
	{optIdle, "net.inet.tcp.keepidle", time.Millisecond, false},
	{optInterval, "net.inet.tcp.keepintvl", time.Millisecond, false},
	{optCount, "net.inet.tcp.keepcnt", 1, false},
}

func systemDefaults() (Config, error) {
	return readSysctls(sysctls)
}
