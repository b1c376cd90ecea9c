package keepalive

import (
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// options returns DragonFly's options (tcp(4); tcp_ctloutput in
// sys/netinet/tcp_usrreq.c): seconds since DragonFly 5.8 (milliseconds
// before, which Go no longer supports), in a C int that the kernel multiplies
// by hz into clock ticks, so at most INT_MAX/hz. The kernel refuses zero, so
// a zero field is written as the system default's value; getsockopt reports
// the socket's own value, which a new socket copies from the system's.
// DragonFly has no user timeout.
var options = sync.OnceValue(func() *[numOptions]sockopt {
	secs := math.MaxInt32 / clockHz()
	return &[numOptions]sockopt{
		optIdle:        {name: "TCP_KEEPIDLE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: time.Second, min: 1, max: secs},
		optInterval:    {name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second, min: 1, max: secs},
		optCount:       {name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT, min: 1, max: math.MaxInt32},
		optUserTimeout: {noSet: noUserTimeout, noGet: noUserTimeout},
		optKeepAlive:   soKeepAlive,
	}
})

// maxSpan is the longest Idle + Interval*Count: the kernel adds them in
// int clock ticks (t_keepidle + t_maxidle) to decide when a silent peer is
// dead.
func maxSpan() time.Duration { return math.MaxInt32 * time.Second / time.Duration(clockHz()) }

const noUserTimeout = "DragonFly has no per-socket limit on retransmission"

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
	return options()[o].get(fd)
}

func checkCombination(c Config) *FieldError {
	return checkSpan(c, maxSpan(), systemDefaults)
}

// checkTCP tells TCP by type and family: DragonFly has no SO_PROTOCOL, and
// TCP is its only stream protocol in those families.
func checkTCP(fd uintptr) error { return checkStreamInet(fd) }

// systemDefaults reads the values a new TCP socket has, in the options'
// own units. (The sysctls net.inet.tcp.keepidle and keepintvl are read in
// milliseconds by DragonFly before 5.8; that 5.8, which moved the options
// to seconds, left them so is not established here.)
func systemDefaults() (Config, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return Config{}, fmt.Errorf("keepalive: reading the system defaults: %w", os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	table := options()
	var c Config
	for _, o := range [...]option{optIdle, optInterval, optCount} {
		v, err := table[o].get(uintptr(fd))
		if err != nil {
			return Config{}, fmt.Errorf("keepalive: reading the system defaults: %s: %w", table[o].name, err)
		}
		c = c.with(o, v)
	}
	return c, nil
}
