//go:build !illumos

package keepalive

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Oracle Solaris 11.4 <netinet/tcp.h> numbers TCP_KEEPIDLE, TCP_KEEPINTVL
// and TCP_KEEPCNT otherwise than illumos, whose numbers x/sys has: on
// Oracle Solaris 0x22 and 0x23 are TCP_INFO and TCP_CONGESTION. The values
// are those of Go's net/tcpsockopt_solaris.go and Rust's libc
// (src/unix/solarish/solaris.rs). Releases before 11.4 have none of the
// three.
const (
	tcpKeepIdle114  = 0x1D
	tcpKeepIntvl114 = 0x1E
	tcpKeepCnt114   = 0x1F
)

// Oracle documents (tcp(4P), and the ipadm property _keepalive_interval) a
// least idle time and interval of 10 s, and the largest of 10 days.
var (
	solaris114 = sunTCP{
		idleMinMs: 10000,
		interval:  sockopt{name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: tcpKeepIntvl114, unit: time.Second, min: 10, max: 864000, zeroIsDefault: true},
		count:     sockopt{name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: tcpKeepCnt114, min: 1, zeroIsDefault: true},
	}
	solarisBefore114 = sunTCP{
		idleMinMs: 10000,
		// Get reads the threshold to tell that the system's is in
		// force, and reports zero.
		interval: sockopt{name: "TCP_KEEPALIVE_ABORT_THRESHOLD", noSet: noPair},
		count:    sockopt{name: "TCP_KEEPALIVE_ABORT_THRESHOLD", noSet: noPair},
	}
)

// noPair says why Solaris before 11.4 cannot set Interval and Count.
const noPair = "Solaris before 11.4 has neither TCP_KEEPINTVL nor TCP_KEEPCNT: probes back off " +
	"from the retransmission timeout until the keepalive abort threshold (TCP_KEEPALIVE_ABORT_THRESHOLD) has passed"

// sun tells Oracle Solaris 11.4 and later from earlier releases as Go's net
// package does, by the release in uname's version ("11.4.0.15.0"), and
// checks it: TCP_KEEPIDLE must read as TCP_KEEPALIVE_THRESHOLD in seconds.
// A program built for GOOS solaris that runs on illumos, whose version
// names the distribution, gets the options of releases before 11.4, which
// illumos has too.
var sun = sync.OnceValue(func() *sunTCP {
	var u unix.Utsname
	if unix.Uname(&u) != nil || !releaseAtLeast(unix.ByteSliceToString(u.Version[:]), 11, 4) {
		return &solarisBefore114
	}
	err := withNewSocket(func(fd uintptr) error {
		idle, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, tcpKeepIdle114)
		if err != nil {
			return err
		}
		ms, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPALIVE_THRESHOLD)
		if err != nil {
			return err
		}
		if idle != ms/1000 {
			return unix.ENOPROTOOPT
		}
		return nil
	})
	if err != nil {
		return &solarisBefore114
	}
	return &solaris114
})

// releaseAtLeast reports whether version begins with a release major.minor
// or later: "11.4.0.15.0" is 11.4.
func releaseAtLeast(version string, major, minor int) bool {
	number := func() (int, bool) {
		n, i := 0, 0
		for ; i < len(version) && '0' <= version[i] && version[i] <= '9' && i < 9; i++ {
			n = n*10 + int(version[i]-'0')
		}
		version = version[i:]
		return n, i > 0
	}
	maj, ok := number()
	if !ok {
		return false
	}
	if maj != major {
		return maj > major
	}
	if len(version) == 0 || version[0] != '.' {
		return false
	}
	version = version[1:]
	mnr, ok := number()
	return ok && mnr >= minor
}
