package keepalive

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// tcpMaxUnackTime is TCP_MAXUNACKTIME (<netinet/tcp.h>, FreeBSD 14 and
// later): the longest time, in seconds, that sent data may go without an
// acknowledgement of progress.
const tcpMaxUnackTime = 0x44

// options returns FreeBSD's options (tcp(4); tcp_default_ctloutput in
// sys/netinet/tcp_usrreq.c). The durations are seconds in a C u_int that the
// kernel multiplies by hz into clock ticks: at most UINT_MAX/hz, as it
// checks, and no more than getsockopt reports back in an int. Zero puts the
// system's value back, live: a socket's own value is used only while it is
// non-zero (tcp_timer.h: TP_KEEPIDLE, TP_KEEPINTVL, TP_KEEPCNT,
// TP_MAXUNACKTIME), and getsockopt reports the value in force, the socket's
// or the sysctl's. A kernel before FreeBSD 14 has no TCP_MAXUNACKTIME.
var options = sync.OnceValue(func() *[numOptions]sockopt {
	secs := min(math.MaxUint32/clockHz(), math.MaxInt32)
	t := [numOptions]sockopt{
		optIdle:        {name: "TCP_KEEPIDLE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: time.Second, min: 1, max: secs, zeroIsDefault: true},
		optInterval:    {name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second, min: 1, max: secs, zeroIsDefault: true},
		optCount:       {name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT, min: 1, max: math.MaxInt32, zeroIsDefault: true},
		optUserTimeout: {name: "TCP_MAXUNACKTIME", level: unix.IPPROTO_TCP, opt: tcpMaxUnackTime, unit: time.Second, min: 1, max: secs, zeroIsDefault: true},
		optKeepAlive:   soKeepAlive,
	}
	if !hasMaxUnackTime() {
		t[optUserTimeout] = sockopt{name: "TCP_MAXUNACKTIME", noSet: noMaxUnackTime, noGet: noMaxUnackTime}
	}
	return &t
})

// maxSpan is the longest Idle + Interval*Count: the kernel adds them in
// unsigned 32-bit clock ticks to decide when a silent peer is dead
// (tcp_timer.c, tcp_timer_keep), and a larger sum would wrap.
func maxSpan() time.Duration { return math.MaxUint32 * time.Second / time.Duration(clockHz()) }

// hasMaxUnackTime reports whether the kernel knows TCP_MAXUNACKTIME: a
// kernel before FreeBSD 14 answers ENOPROTOOPT. Where no socket can be made
// to ask, it is taken to, and setting it says otherwise if need be.
func hasMaxUnackTime() bool {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return true
	}
	defer unix.Close(fd)
	_, err = unix.GetsockoptInt(fd, unix.IPPROTO_TCP, tcpMaxUnackTime)
	return !errors.Is(err, unix.ENOPROTOOPT)
}

const noMaxUnackTime = "the kernel has no TCP_MAXUNACKTIME, which FreeBSD 14 added"

func setOption(fd uintptr, o option, c Config) error {
	if o == optKeepAlive {
		return setKeepAlive(fd, !c.Off)
	}
	// A zero Idle, Interval or Count restores the system value; a zero
	// UserTimeout restores net.inet.tcp.maxunacktime, which is none unless
	// the administrator set it.
	err := options()[o].set(fd, c.get(o))
	if o == optUserTimeout && errors.Is(err, unix.ENOPROTOOPT) {
		if c.UserTimeout == 0 {
			return nil // the kernel has no such limit: none is in force
		}
		return fmt.Errorf("%w: %w", unsupported("UserTimeout", noMaxUnackTime), err)
	}
	return err
}

func getOption(fd uintptr, o option) (int64, error) {
	if o == optKeepAlive {
		return getKeepAlive(fd)
	}
	v, err := options()[o].get(fd)
	if o == optUserTimeout && errors.Is(err, unix.ENOPROTOOPT) {
		return 0, nil // the kernel has no such limit: none is in force
	}
	return v, err
}

func checkCombination(c Config) *FieldError {
	return checkSpan(c, maxSpan(), systemDefaults)
}

// checkTCP tells TCP by type and family, then by SO_PROTOCOL from SCTP,
// which also makes stream sockets in those families.
func checkTCP(fd uintptr) error {
	if err := checkStreamInet(fd); err != nil {
		return err
	}
	p, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	switch {
	case err != nil:
		return os.NewSyscallError("getsockopt SO_PROTOCOL", err)
	case p != unix.IPPROTO_TCP:
		return fmt.Errorf("socket protocol %d", p)
	}
	return nil
}

// sysctls holds the system defaults, in milliseconds for the durations
// (kern_sysctl.c: sysctl_msec_to_ticks). The user timeout is
// net.inet.tcp.maxunacktime, zero (none) by default, which a kernel without
// TCP_MAXUNACKTIME lacks: none then.
var sysctls = []sysctlDefault{
	{optIdle, "net.inet.tcp.keepidle", time.Millisecond, false},
	{optInterval, "net.inet.tcp.keepintvl", time.Millisecond, false},
	{optCount, "net.inet.tcp.keepcnt", 1, false},
	{optUserTimeout, "net.inet.tcp.maxunacktime", time.Millisecond, true},
}

func systemDefaults() (Config, error) {
	return readSysctls(sysctls)
}
