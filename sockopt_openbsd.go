package keepalive

import (
	"fmt"
	"time"
)

// OpenBSD turns keepalive on and off per socket (SO_KEEPALIVE) but has no
// per-socket timing: tcp_ctloutput answers ENOPROTOOPT to any TCP_KEEP*
// option, and the keepalive timer reads the sysctls net.inet.tcp.keepidle
// and keepintvl and a probe count fixed at 8 (sys/netinet/tcp_timer.c).

const (
	noTiming      = "OpenBSD sets keepalive timing for the whole machine only (sysctl net.inet.tcp.keepidle and keepintvl; the probe count is fixed at 8)"
	noUserTimeout = "OpenBSD has no per-socket limit on retransmission"
)

// keepCount is the number of unanswered probes after which OpenBSD drops a
// connection (sys/netinet/tcp_timer.h: TCPTV_KEEPCNT).
const keepCount = 8

func support(o option) Support {
	switch o {
	case optKeepAlive:
		return Support{Option: "SO_KEEPALIVE", Set: true, Get: true}
	case optUserTimeout:
		return Support{whySet: noUserTimeout, whyGet: noUserTimeout}
	}
	return Support{whySet: noTiming, whyGet: noTiming}
}

// acceptInherits is false: there is nothing per socket to inherit but
// SO_KEEPALIVE, which ListenConfig sets on each accepted connection.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads the sysctls.
const defaultsReadable = true

func setOption(fd uintptr, o option, c, sys Config) error {
	if o == optKeepAlive {
		return setKeepAlive(fd, !c.Off)
	}
	return support(o).errSet(optionField[o])
}

func getOption(fd uintptr, o option) (int64, error) {
	if o == optKeepAlive {
		return getKeepAlive(fd)
	}
	return 0, unsupported("reading "+optionField[o], support(o).whyGet)
}

func checkCombination(Config) *FieldError { return nil }

// checkTCP tells TCP by type and family: TCP is OpenBSD's only stream
// protocol in those families.
func checkTCP(fd uintptr) error { return checkStreamInet(fd) }

func keepAliveForced() (bool, error) {
	n, err := sysctlInt(alwaysKeepAlive)
	return n != 0, err
}

// systemDefaults reads the sysctls net.inet.tcp.keepidle and keepintvl, and
// the fixed probe count. They are seconds on current OpenBSD; older
// releases counted slow ticks, PR_SLOWHZ a second, and reported
// net.inet.tcp.slowhz, which current ones no longer answer.
func systemDefaults() (Config, error) {
	unit := time.Second
	if hz, err := sysctlInt("net.inet.tcp.slowhz"); err == nil {
		if hz <= 0 {
			return Config{}, fmt.Errorf("keepalive: net.inet.tcp.slowhz is %d", hz)
		}
		unit = time.Second / time.Duration(hz)
	}
	idle, err := sysctlInt("net.inet.tcp.keepidle")
	if err != nil {
		return Config{}, err
	}
	intvl, err := sysctlInt("net.inet.tcp.keepintvl")
	if err != nil {
		return Config{}, err
	}
	return Config{Idle: time.Duration(idle) * unit, Interval: time.Duration(intvl) * unit, Count: keepCount}, nil
}
