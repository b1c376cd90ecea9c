package keepalive

import (
	"fmt"
	"time"
)

// OpenBSD turns keepalive on and off per socket (SO_KEEPALIVE) but has no
// per-socket timing: tcp_ctloutput answers ENOPROTOOPT to any TCP_KEEP*
// option, and the keepalive timer reads the sysctls net.inet.tcp.keepidle
// and keepintvl and a probe count fixed at 8 (sys/netinet/tcp_timer.c).
var openbsd = [numOptions]sockopt{
	optIdle:        {noSet: noTiming, noGet: noTiming},
	optInterval:    {noSet: noTiming, noGet: noTiming},
	optCount:       {noSet: noTiming, noGet: noTiming},
	optUserTimeout: {noSet: noUserTimeout, noGet: noUserTimeout},
	optKeepAlive:   soKeepAlive,
}

func options() *[numOptions]sockopt { return &openbsd }

const (
	noTiming      = "OpenBSD sets keepalive timing for the whole machine only (sysctl net.inet.tcp.keepidle and keepintvl; the probe count is fixed at 8)"
	noUserTimeout = "OpenBSD has no per-socket limit on retransmission"
)

// keepCount is the number of unanswered probes after which OpenBSD drops a
// connection (sys/netinet/tcp_timer.h: TCPTV_KEEPCNT).
const keepCount = 8

// setOption sets SO_KEEPALIVE, the one option the table can set.
func setOption(fd uintptr, _ option, c Config) error { return setKeepAlive(fd, !c.Off) }

// getOption reads SO_KEEPALIVE, the one option the table can read.
func getOption(fd uintptr, _ option) (int64, error) { return getKeepAlive(fd) }

func checkCombination(Config) *FieldError { return nil }

// checkTCP tells TCP by type and family: TCP is OpenBSD's only stream
// protocol in those families.
func checkTCP(fd uintptr) error { return checkStreamInet(fd) }

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
	c, err := readSysctls([]sysctlDefault{
		{optIdle, "net.inet.tcp.keepidle", unit, false},
		{optInterval, "net.inet.tcp.keepintvl", unit, false},
	})
	if err != nil {
		return Config{}, err
	}
	c.Count = keepCount
	return c, nil
}
