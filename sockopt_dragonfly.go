package keepalive

import (
	"fmt"
	"math"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// DragonFly's options (tcp(4); tcp_ctloutput in sys/netinet/tcp_usrreq.c):
// seconds since DragonFly 5.8 (milliseconds before, which Go no longer
// supports), in a C int that the kernel multiplies by hz into clock ticks.
// The kernel refuses zero, and getsockopt reports the socket's own value,
// which a new socket copies from the system's.
var sockopts = [numOptions]sockopt{
	optIdle:     {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: time.Second},
	optInterval: {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second},
	optCount:    {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT},
}

// maxOptionSeconds is the largest number of seconds whose clock ticks fit
// the kernel's int.
func maxOptionSeconds() int64 { return math.MaxInt32 / clockHz() }

// maxSpan is the longest Idle + Interval*Count: the kernel adds them in
// int clock ticks (t_keepidle + t_maxidle) to decide when a silent peer is
// dead.
func maxSpan() time.Duration { return math.MaxInt32 * time.Second / time.Duration(clockHz()) }

const noUserTimeout = "DragonFly has no per-socket limit on retransmission"

func support(o option) Support {
	switch o {
	case optKeepAlive:
		return Support{Option: "SO_KEEPALIVE", Set: true, Get: true}
	case optIdle:
		return Support{Option: "TCP_KEEPIDLE", Set: true, Get: true, Unit: time.Second, Min: 1, Max: maxOptionSeconds()}
	case optInterval:
		return Support{Option: "TCP_KEEPINTVL", Set: true, Get: true, Unit: time.Second, Min: 1, Max: maxOptionSeconds()}
	case optCount:
		return Support{Option: "TCP_KEEPCNT", Set: true, Get: true, Min: 1, Max: math.MaxInt32}
	}
	return Support{whySet: noUserTimeout, whyGet: noUserTimeout}
}

// acceptInherits is false: DragonFly's syncache_socket copies the listening
// socket's keepalive options into an accepted one, but that is read from
// source, not proven here.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads a new socket's values.
const defaultsReadable = true

func getOption(fd uintptr, o option) (int64, error) {
	switch o {
	case optKeepAlive:
		return getKeepAlive(fd)
	case optUserTimeout:
		return 0, unsupported("reading UserTimeout", noUserTimeout)
	}
	return sockopts[o].get(fd)
}

func checkCombination(c Config) *FieldError {
	return checkSpan(c, maxSpan(), systemDefaults)
}

// checkTCP tells TCP by type and family: DragonFly has no SO_PROTOCOL, and
// TCP is its only stream protocol in those families.
func checkTCP(fd uintptr) error { return checkStreamInet(fd) }

func keepAliveForced() (bool, error) {
	n, err := sysctlInt(alwaysKeepAlive)
	return n != 0, err
}

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
	var c Config
	for _, o := range [...]option{optIdle, optInterval, optCount} {
		v, err := sockopts[o].get(uintptr(fd))
		if err != nil {
			return Config{}, fmt.Errorf("keepalive: reading the system defaults: %s: %w", support(o).Option, err)
		}
		c = c.with(o, v)
	}
	return c, nil
}
