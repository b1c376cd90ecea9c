package keepalive

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The Windows options and calls of winsock.go, checked on every platform
// against Microsoft's documentation, so that the path of Windows 10 version
// 1709 and later, which Wine lacks, is checked where the tests run. The
// numbers and units below are copied from learn.microsoft.com, not from the
// package: "IPPROTO_TCP socket options" (TCP_KEEPIDLE and TCP_KEEPINTVL:
// "the number of seconds"; TCP_KEEPCNT: "the number of TCP keep alive probes";
// TCP_MAXRT: "the timeout, in seconds"), "SO_KEEPALIVE socket option",
// "SIO_KEEPALIVE_VALS control code" (keepalivetime and keepaliveinterval "in
// milliseconds") and the headers' values (winsock2.h SOL_SOCKET 0xffff and
// SO_KEEPALIVE 0x0008; ws2def.h IPPROTO_TCP 6; ws2ipdef.h TCP_MAXRT 5,
// TCP_KEEPALIVE 3, TCP_KEEPCNT 16, TCP_KEEPINTVL 17; mstcpip.h
// SIO_KEEPALIVE_VALS _WSAIOW(IOC_VENDOR, 4), IOC_IN 0x80000000 | IOC_VENDOR
// 0x18000000 | 4).

// documented is one option as Microsoft documents it.
type documented struct {
	level, opt int
	unit       time.Duration // zero for a count or a flag
}

var (
	msTCPKeepIdle  = documented{6, 3, time.Second}
	msTCPKeepIntvl = documented{6, 17, time.Second}
	msTCPKeepCnt   = documented{6, 16, 0}
	msTCPMaxRT     = documented{6, 5, time.Second}
	msSOKeepAlive  = documented{0xffff, 8, 0}
)

const msSIOKeepAliveVals = 0x80000000 | 0x18000000 | 4

// winsock10 is what the probe finds on Windows 10 version 1709 and later,
// with the TCP_MAXRT a new socket has there.
var winsock10 = winProbe{maxRTDefault: 21}

// winsockOld is what the probe finds before 1709, and under Wine.
var winsockOld = winProbe{
	noTimes: "this system refuses TCP_KEEPIDLE and TCP_KEEPINTVL (WSAENOPROTOOPT), as Windows before 10 version 1709 and Wine do",
	noCount: "this system refuses TCP_KEEPCNT (WSAENOPROTOOPT), as Windows before 10 version 1703 and Wine do",
	noMaxRT: "this system refuses TCP_MAXRT (WSAENOPROTOOPT), as Wine does (Windows has it since Vista)",
}

// setsockopt is the call that sets the documented option to n of its units.
func (d documented) setsockopt(n int32) winsockCall {
	return winsockCall{level: int32(d.level), opt: int32(d.opt), value: n}
}

// TestWinsockOptions checks the table of Windows 10 version 1709 and later
// against the documented numbers and units.
func TestWinsockOptions(t *testing.T) {
	table := winsockOptions(winsock10)
	for _, tt := range []struct {
		o        option
		name     string
		want     documented
		min, max int64
	}{
		{optIdle, "TCP_KEEPIDLE", msTCPKeepIdle, 1, 32767},
		{optInterval, "TCP_KEEPINTVL", msTCPKeepIntvl, 1, 32767},
		{optCount, "TCP_KEEPCNT", msTCPKeepCnt, 1, 255},
		{optUserTimeout, "TCP_MAXRT", msTCPMaxRT, 1, 2147483},
		{optKeepAlive, "SO_KEEPALIVE", msSOKeepAlive, 0, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			so := table[tt.o]
			assert.Equal(t, tt.name, so.name)
			assert.Equal(t, []int{tt.want.level, tt.want.opt}, []int{so.level, so.opt}, "level and option")
			assert.Equal(t, tt.want.unit, so.unit, "unit")
			assert.Equal(t, []int64{tt.min, tt.max}, []int64{so.min, so.max}, "range")
			assert.Empty(t, so.noSet+so.noGet, "set and read back")
		})
	}
	// The largest TCP_MAXRT, in milliseconds, is a 32-bit signed number:
	// TCP_MAXRTMS can hold the same timeout.
	assert.LessOrEqual(t, table[optUserTimeout].max*1000, int64(1<<31-1))
}

// TestWinsockSet checks the calls that apply each field of a Config on
// Windows 10 version 1709 and later, and before it (and under Wine), in the
// documented units.
func TestWinsockSet(t *testing.T) {
	table10, tableOld := winsockOptions(winsock10), winsockOptions(winsockOld)
	for _, tt := range []struct {
		name  string
		table *[numOptions]sockopt
		o     option
		c     Config
		want  winsockCall
	}{
		{"idle in seconds", &table10, optIdle, Config{Idle: 30 * time.Second}, msTCPKeepIdle.setsockopt(30)},
		{"idle largest", &table10, optIdle, Config{Idle: 32767 * time.Second}, msTCPKeepIdle.setsockopt(32767)},
		{"interval in seconds", &table10, optInterval, Config{Interval: 7 * time.Second}, msTCPKeepIntvl.setsockopt(7)},
		{"count", &table10, optCount, Config{Count: 4}, msTCPKeepCnt.setsockopt(4)},
		{"count largest", &table10, optCount, Config{Count: 255}, msTCPKeepCnt.setsockopt(255)},
		{"user timeout in seconds", &table10, optUserTimeout, Config{UserTimeout: 40 * time.Second}, msTCPMaxRT.setsockopt(40)},
		{"user timeout largest", &table10, optUserTimeout, Config{UserTimeout: 2147483 * time.Second}, msTCPMaxRT.setsockopt(2147483)},
		{"no user timeout: a new socket's TCP_MAXRT", &table10, optUserTimeout, Config{}, msTCPMaxRT.setsockopt(winsock10.maxRTDefault)},
		{"keepalive on", &table10, optKeepAlive, Config{Idle: 30 * time.Second}, msSOKeepAlive.setsockopt(1)},
		{"keepalive off", &table10, optKeepAlive, Config{Off: true, Idle: 30 * time.Second}, msSOKeepAlive.setsockopt(0)},

		{"before 1709: idle in milliseconds", &tableOld, optIdle, Config{Idle: 30 * time.Second, Interval: 5 * time.Second},
			winsockCall{ioctl: msSIOKeepAliveVals, idleMs: 30000, intervalMs: 5000}},
		{"before 1709: interval in milliseconds", &tableOld, optInterval, Config{Idle: 2 * time.Hour, Interval: time.Second},
			winsockCall{ioctl: msSIOKeepAliveVals, idleMs: 7200000, intervalMs: 1000}},
		{"before 1709: the largest", &tableOld, optIdle, Config{Idle: 32767 * time.Second, Interval: 32767 * time.Second},
			winsockCall{ioctl: msSIOKeepAliveVals, idleMs: 32767000, intervalMs: 32767000}},
		{"before 1709: keepalive on with the times", &tableOld, optKeepAlive, Config{Idle: 45 * time.Second, Interval: 3 * time.Second},
			winsockCall{ioctl: msSIOKeepAliveVals, idleMs: 45000, intervalMs: 3000}},
		{"before 1709: keepalive off", &tableOld, optKeepAlive, Config{Off: true, Idle: 45 * time.Second, Interval: 3 * time.Second},
			msSOKeepAlive.setsockopt(0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, winsockSet(tt.table, winsock10.maxRTDefault, tt.o, tt.c))
		})
	}

	// The table before 1709: Idle and Interval through
	// SIO_KEEPALIVE_VALS in whole seconds, neither Count nor UserTimeout.
	for _, o := range []option{optIdle, optInterval} {
		so := tableOld[o]
		assert.Equal(t, []any{"SIO_KEEPALIVE_VALS", time.Second, int64(1), int64(32767)}, []any{so.name, so.unit, so.min, so.max}, optionField[o])
		assert.Empty(t, so.noSet, optionField[o])
		assert.Contains(t, so.noGet, "cannot be read back", optionField[o])
	}
	assert.NotEmpty(t, tableOld[optCount].noSet, "Count")
	assert.NotEmpty(t, tableOld[optUserTimeout].noSet, "UserTimeout")
}

// TestWinsockGet checks the values getsockopt's documented units turn into.
func TestWinsockGet(t *testing.T) {
	table := winsockOptions(winsock10)
	for _, tt := range []struct {
		o    option
		v    int32
		want int64
	}{
		{optIdle, 30, int64(30 * time.Second)},
		{optInterval, 7, int64(7 * time.Second)},
		{optCount, 4, 4},
		{optUserTimeout, 40, int64(40 * time.Second)},
		{optUserTimeout, winsock10.maxRTDefault, 0},
		{optKeepAlive, 1, 1},
		{optKeepAlive, 0, 0},
	} {
		t.Run(fmt.Sprintf("%s %d", optionField[tt.o], tt.v), func(t *testing.T) {
			got, err := winsockGet(&table, winsock10.maxRTDefault, tt.o, tt.v)
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
	_, err := winsockGet(&table, winsock10.maxRTDefault, optUserTimeout, -1)
	assert.EqualError(t, err, "TCP_MAXRT is -1 (retransmit forever), which a Config cannot express")
}
