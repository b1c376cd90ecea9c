package keepalive

import (
	"fmt"
	"math"
	"time"
)

// Windows' options, their units and limits, and the calls that write and
// read a Config's fields there: the data and the arithmetic of
// sockopt_windows.go, which makes the calls. This file has no build
// constraint, and its own copy of Winsock's numbers, which x/sys has for
// Windows only, so that a test on Linux (winsock_test.go) checks the calls
// of every Windows, 10 version 1709 and later included, against Microsoft's
// documented numbers and units, and a test run on Windows checks the
// numbers against x/sys's.
//
// The sources (learn.microsoft.com): "IPPROTO_TCP socket options" (TCP_KEEPIDLE
// and TCP_KEEPINTVL in seconds, since Windows 10 version 1709; TCP_KEEPCNT,
// at most 255, since version 1703; TCP_MAXRT in seconds, -1 for "retransmit
// forever", since Vista), "SO_KEEPALIVE socket option", and
// "SIO_KEEPALIVE_VALS control code" (a tcp_keepalive of onoff, keepalivetime
// and keepaliveinterval, the times in milliseconds, which cannot be read
// back; the probe count fixed at 10 since Vista). Before 1709 the idle time
// and interval are set together with SIO_KEEPALIVE_VALS; Wine (8.0 at least)
// answers TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_MAXRT with
// WSAENOPROTOOPT as the older versions do, whatever version it reports. So
// sockopt_windows.go decides what it uses by trying the options on a socket
// once (a winProbe), and falls back to SIO_KEEPALIVE_VALS per socket too.

// Winsock's numbers (winsock2.h, ws2def.h, ws2ipdef.h, mstcpip.h).
const (
	wsSOLSocket        = 0xffff
	wsSOKeepAlive      = 0x0008
	wsIPProtoTCP       = 6
	wsTCPKeepIdle      = 3 // TCP_KEEPALIVE, which TCP_KEEPIDLE names
	wsTCPMaxRT         = 5
	wsTCPKeepCnt       = 16
	wsTCPKeepIntvl     = 17
	wsSIOKeepAliveVals = 0x98000004 // _WSAIOW(IOC_VENDOR, 4)
)

// The limits. Windows documents no range for TCP_KEEPIDLE, TCP_KEEPINTVL
// or the times of SIO_KEEPALIVE_VALS; 32767 s is Linux's limit, the largest
// time Wine can pass on (beyond it Wine fails the idle time with WSAEINVAL
// and silently keeps the old interval), and ample for keepalive, whose use
// is to be shorter than the 2 hour default. TCP_KEEPCNT takes at most 255.
// TCP_MAXRT is a DWORD of seconds with -1 for "retransmit forever"; the
// limit is Linux's TCP_USER_TIMEOUT limit in whole seconds, the largest
// that is also a 32-bit signed number of milliseconds (TCP_MAXRTMS carries
// the same timeout in milliseconds).
const (
	maxKeepAliveTime = 32767
	maxKeepAliveCnt  = 255
	maxRetransmit    = math.MaxInt32 / 1000
)

// keepAliveVals names SIO_KEEPALIVE_VALS in the table, where it carries
// Idle and Interval.
const keepAliveVals = "SIO_KEEPALIVE_VALS"

// A winProbe is what trying the options on a new socket found on this
// Windows: for each group of options, why it cannot be set, or read back
// (empty where it can), and TCP_MAXRT on a new socket.
type winProbe struct {
	noTimes, noTimesRead string // TCP_KEEPIDLE and TCP_KEEPINTVL
	noCount, noCountRead string // TCP_KEEPCNT
	noMaxRT, noMaxRTRead string // TCP_MAXRT
	// maxRTDefault is TCP_MAXRT on a new socket: what a zero UserTimeout
	// writes back, and what reads back as zero.
	maxRTDefault int32
}

// winsockOptions returns the table of a Windows where the probe found p.
// Each field of the Config has the option of Windows 10 version 1709 and
// later; where p found it missing, Idle and Interval go through
// SIO_KEEPALIVE_VALS, and Count and UserTimeout cannot be set.
func winsockOptions(p winProbe) [numOptions]sockopt {
	t := [numOptions]sockopt{
		optIdle:        {name: "TCP_KEEPIDLE", level: wsIPProtoTCP, opt: wsTCPKeepIdle, unit: time.Second, min: 1, max: maxKeepAliveTime, noGet: p.noTimesRead},
		optInterval:    {name: "TCP_KEEPINTVL", level: wsIPProtoTCP, opt: wsTCPKeepIntvl, unit: time.Second, min: 1, max: maxKeepAliveTime, noGet: p.noTimesRead},
		optCount:       {name: "TCP_KEEPCNT", level: wsIPProtoTCP, opt: wsTCPKeepCnt, min: 1, max: maxKeepAliveCnt, noGet: p.noCountRead},
		optUserTimeout: {name: "TCP_MAXRT", level: wsIPProtoTCP, opt: wsTCPMaxRT, unit: time.Second, min: 1, max: maxRetransmit, zeroIsDefault: true, noGet: p.noMaxRTRead},
		optKeepAlive:   {name: "SO_KEEPALIVE", level: wsSOLSocket, opt: wsSOKeepAlive},
	}
	if p.noTimes != "" {
		// Whole seconds, as Wine passes them on: it rounds the
		// milliseconds to seconds for the Linux kernel.
		why := "the idle time and interval are set with SIO_KEEPALIVE_VALS, which cannot be read back; " + p.noTimes
		for _, o := range [...]option{optIdle, optInterval} {
			t[o] = sockopt{name: keepAliveVals, unit: time.Second, min: 1, max: maxKeepAliveTime, noGet: why}
		}
	}
	if p.noCount != "" {
		why := p.noCount + "; Windows sends 10 probes, which cannot be changed"
		t[optCount] = sockopt{noSet: why, noGet: why}
	}
	if p.noMaxRT != "" {
		t[optUserTimeout] = sockopt{noSet: p.noMaxRT, noGet: p.noMaxRT}
	}
	return t
}

// A winsockCall is one call that writes an option on Windows: a setsockopt
// of an int, or, where ioctl is not zero, a WSAIoctl that passes a
// tcp_keepalive with onoff 1 (SIO_KEEPALIVE_VALS).
type winsockCall struct {
	level, opt, value int32
	ioctl             uint32
	// idleMs and intervalMs are the tcp_keepalive's keepalivetime and
	// keepaliveinterval, in milliseconds, where ioctl is not zero.
	idleMs, intervalMs uint32
}

// usesKeepAliveVals reports whether writing option o of c on a Windows
// whose table is t goes through SIO_KEEPALIVE_VALS: Idle and Interval where
// the system lacks their options, and turning keepalive on there too, so
// that it never runs with other times than c's. Such a call needs both
// times: a zero one at the system default.
func usesKeepAliveVals(t *[numOptions]sockopt, o option, c Config) bool {
	if t[optIdle].name != keepAliveVals {
		return false
	}
	return o == optIdle || o == optInterval || o == optKeepAlive && !c.Off
}

// winsockSet returns the call that writes option o of c on a Windows whose
// table is t and whose TCP_MAXRT on a new socket is maxRTDefault. Where the
// call is SIO_KEEPALIVE_VALS (usesKeepAliveVals), c's Idle and Interval are
// both non-zero.
func winsockSet(t *[numOptions]sockopt, maxRTDefault int32, o option, c Config) winsockCall {
	if usesKeepAliveVals(t, o, c) {
		return keepAliveValsCall(c)
	}
	so := &t[o]
	if o == optUserTimeout && c.UserTimeout == 0 {
		// No user timeout: TCP_MAXRT as a new socket has it.
		return winsockCall{level: int32(so.level), opt: int32(so.opt), value: maxRTDefault}
	}
	return winsockCall{level: int32(so.level), opt: int32(so.opt), value: int32(c.get(o) / so.valueUnit())}
}

// keepAliveValsCall returns the SIO_KEEPALIVE_VALS call that sets c's Idle
// and Interval, both non-zero, and turns keepalive on: with onoff 0
// Windows ignores the times. For an Off Config, SO_KEEPALIVE, which apply
// writes last, turns it off again and leaves the times for when it is
// turned on.
func keepAliveValsCall(c Config) winsockCall {
	return winsockCall{ioctl: wsSIOKeepAliveVals, idleMs: uint32(c.Idle / time.Millisecond), intervalMs: uint32(c.Interval / time.Millisecond)}
}

// winsockGet returns, in Config.get's units, the value of option o on a
// Windows whose table is t, from the int v that getsockopt reports for it.
// TCP_MAXRT as on a new socket (maxRTDefault) is no user timeout, and -1,
// "retransmit forever", fails: a Config cannot express it.
func winsockGet(t *[numOptions]sockopt, maxRTDefault int32, o option, v int32) (int64, error) {
	switch {
	case o == optKeepAlive && v != 0:
		return 1, nil
	case o != optUserTimeout:
	case v == maxRTDefault:
		return 0, nil
	case v < 0:
		return 0, fmt.Errorf("TCP_MAXRT is %d (retransmit forever), which a Config cannot express", v)
	}
	return int64(v) * t[o].valueUnit(), nil
}
