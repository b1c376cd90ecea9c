package keepalive

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// Windows' mechanism: trying the options on a socket once (probe), making
// the calls that winsock.go computes, and reading the defaults from the
// registry. The options, their units and limits, and the arithmetic of the
// calls are in winsock.go.

// soProtocolInfoW is SO_PROTOCOL_INFOW (winsock2.h), which x/sys/windows
// does not define: getsockopt fills a WSAPROTOCOL_INFOW with the socket's
// address family, type and protocol.
const soProtocolInfoW = 0x2005

// Windows' defaults (learn.microsoft.com, "SIO_KEEPALIVE_VALS control
// code", and the TCP/IP registry reference): the registry values
// KeepAliveTime and KeepAliveInterval, in milliseconds, which Windows does
// not create, 2 hours and 1 second when absent; since Vista the probe count
// is 10 where TCP_KEEPCNT does not change it.
const (
	tcpipParameters          = `SYSTEM\CurrentControlSet\Services\Tcpip\Parameters`
	defaultKeepAliveTime     = 2 * time.Hour
	defaultKeepAliveInterval = time.Second
	defaultKeepAliveCount    = 10
)

// acceptInherits is false: whether a socket accepted with AcceptEx takes
// the listening socket's keepalive options when SO_UPDATE_ACCEPT_CONTEXT
// is set is not documented.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads the registry, or
// knows the documented defaults.
const defaultsReadable = true

// userTimeoutEndsProbes is false: whether TCP_MAXRT also ends an idle
// connection whose keepalive probes go unanswered is not documented.
const userTimeoutEndsProbes = false

// probed is what trying the options on a new socket found, once.
var probed = sync.OnceValue(probe)

// table is the table for what probed found.
var table = sync.OnceValue(func() *[numOptions]sockopt {
	t := winsockOptions(probed())
	return &t
})

func options() *[numOptions]sockopt { return table() }

// probe tries TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_MAXRT on a
// new TCP socket, as the standard library does for the first three: an
// option that cannot be set is missing from this system.
func probe() winProbe {
	s, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		s, err = windows.Socket(windows.AF_INET6, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	}
	if err != nil {
		// Without a socket to try them on, assume the oldest: what
		// every Windows since 2000 has.
		why := "no TCP socket to try the options on: " + os.NewSyscallError("socket", err).Error()
		return winProbe{noTimes: why, noTimesRead: why, noCount: why, noCountRead: why, noMaxRT: why, noMaxRTRead: why}
	}
	defer windows.Closesocket(s)
	fd := uintptr(s)
	// The options of Windows 10 version 1709 and later, to try.
	all := winsockOptions(winProbe{})

	setTimes := trySet(fd, &all[optIdle], 1)
	if setTimes == nil {
		setTimes = trySet(fd, &all[optInterval], 1)
	}
	getTimes := setTimes
	if getTimes == nil {
		getTimes = tryGet(fd, &all[optIdle], 1)
	}
	if getTimes == nil {
		getTimes = tryGet(fd, &all[optInterval], 1)
	}

	setCount := trySet(fd, &all[optCount], 1)
	getCount := setCount
	if getCount == nil {
		getCount = tryGet(fd, &all[optCount], 1)
	}

	// TCP_MAXRT: its value on a new socket is the default; setting it
	// must work for a value and for the default, so that a zero
	// UserTimeout can be written back.
	maxRT := &all[optUserTimeout]
	maxRTDefault, getMaxRT := getInt(fd, int32(maxRT.level), int32(maxRT.opt))
	setMaxRT := getMaxRT
	if setMaxRT == nil {
		setMaxRT = trySet(fd, maxRT, 1)
	}
	if setMaxRT == nil {
		getMaxRT = tryGet(fd, maxRT, 1)
		if err := setInt(fd, int32(maxRT.level), int32(maxRT.opt), maxRTDefault); err != nil {
			setMaxRT = fmt.Errorf("putting its default %d back: %w", maxRTDefault, err)
		}
	}

	p := winProbe{maxRTDefault: maxRTDefault}
	switch {
	case setTimes != nil:
		p.noTimes = missing("TCP_KEEPIDLE and TCP_KEEPINTVL", setTimes, "Windows before 10 version 1709 and Wine do")
	case getTimes != nil:
		p.noTimesRead = unreadable(all[optIdle].name, getTimes)
	}
	switch {
	case setCount != nil:
		p.noCount = missing("TCP_KEEPCNT", setCount, "Windows before 10 version 1703 and Wine do")
	case getCount != nil:
		p.noCountRead = unreadable("TCP_KEEPCNT", getCount)
	}
	switch {
	case setMaxRT != nil:
		p.noMaxRT = missing("TCP_MAXRT", setMaxRT, "Wine does (Windows has it since Vista)")
	case getMaxRT != nil:
		p.noMaxRTRead = unreadable("TCP_MAXRT", getMaxRT)
	}
	return p
}

// trySet sets the option of so to n (seconds for a duration) on fd.
func trySet(fd uintptr, so *sockopt, n int32) error {
	return setInt(fd, int32(so.level), int32(so.opt), n)
}

// tryGet reads the option of so on fd, which must hold n.
func tryGet(fd uintptr, so *sockopt, n int32) error {
	v, err := getInt(fd, int32(so.level), int32(so.opt))
	if err == nil && v != n {
		err = fmt.Errorf("%s reads %d after it was set to %d", so.name, v, n)
	}
	return err
}

func setOption(fd uintptr, o option, c Config) error {
	t := table()
	if usesKeepAliveVals(t, o, c) {
		return setKeepAliveVals(fd, c)
	}
	err := do(fd, winsockSet(t, probed().maxRTDefault, o, c))
	if !errors.Is(err, windows.WSAENOPROTOOPT) {
		return err
	}
	// This socket lacks an option that the system has (a layered
	// service provider may).
	switch o {
	case optIdle, optInterval:
		// Set the idle time and interval together.
		return setKeepAliveVals(fd, c)
	case optCount, optUserTimeout:
		return fmt.Errorf("%w (%w)", unsupported(optionField[o], "this socket refuses "+t[o].name), err)
	}
	return err
}

// setKeepAliveVals sets c's Idle and Interval with SIO_KEEPALIVE_VALS,
// which takes both, a zero one at the system default.
func setKeepAliveVals(fd uintptr, c Config) error {
	if c.Idle == 0 || c.Interval == 0 {
		d, err := systemDefaults()
		if err != nil {
			return err
		}
		c = c.WithDefaults(d)
	}
	return do(fd, keepAliveValsCall(c))
}

// do makes the call w on the socket fd.
func do(fd uintptr, w winsockCall) error {
	if w.ioctl == 0 {
		return setInt(fd, w.level, w.opt, w.value)
	}
	ka := windows.TCPKeepalive{OnOff: 1, Time: w.idleMs, Interval: w.intervalMs}
	var n uint32
	err := windows.WSAIoctl(windows.Handle(fd), w.ioctl,
		(*byte)(unsafe.Pointer(&ka)), uint32(unsafe.Sizeof(ka)), nil, 0, &n, nil, 0)
	return os.NewSyscallError("WSAIoctl SIO_KEEPALIVE_VALS", err)
}

func getOption(fd uintptr, o option) (int64, error) {
	t := table()
	so := &t[o]
	v, err := getInt(fd, int32(so.level), int32(so.opt))
	if errors.Is(err, windows.WSAENOPROTOOPT) && o != optUserTimeout {
		// The system has the option, this socket does not: the
		// values were set with SIO_KEEPALIVE_VALS.
		return 0, fmt.Errorf("%w (%w)", unsupported("reading "+optionField[o]+" back", "this socket refuses "+so.name), err)
	}
	if err != nil {
		return 0, err
	}
	return winsockGet(t, probed().maxRTDefault, o, v)
}

func checkCombination(Config) *FieldError { return nil }

func retransmitLimit() (time.Duration, error) {
	return 0, fmt.Errorf("keepalive: %w", unsupported("reading the retransmission timeout",
		"Windows bounds retransmission with the registry value TcpMaxDataRetransmissions and timers of its own, which this package does not model"))
}

func sysctlConf(Config) (string, error) {
	return "", fmt.Errorf("keepalive: %w", unsupported("writing sysctl lines",
		"Windows has no sysctls: it keeps its keepalive defaults in the registry values KeepAliveTime and KeepAliveInterval"))
}

func backoffLimit(time.Duration) (time.Duration, bool) { return 0, false }

// missing says why names, which the probe found missing with err, cannot
// be used; which says who lacks them.
func missing(names string, err error, which string) string {
	if errors.Is(err, windows.WSAENOPROTOOPT) {
		return "this system refuses " + names + " (WSAENOPROTOOPT), as " + which
	}
	return names + " does not work here: " + err.Error()
}

// unreadable says why name, which can be set, cannot be read: the probe
// failed to read it with err.
func unreadable(name string, err error) string {
	if errors.Is(err, windows.WSAENOPROTOOPT) {
		return "this system sets " + name + " but refuses to read it (WSAENOPROTOOPT)"
	}
	return name + " cannot be read back: " + err.Error()
}

// checkTCP reports why fd is not a TCP socket, from the protocol in its
// WSAPROTOCOL_INFOW.
func checkTCP(fd uintptr) error {
	var info windows.WSAProtocolInfo
	n := int32(unsafe.Sizeof(info))
	err := windows.Getsockopt(windows.Handle(fd), windows.SOL_SOCKET, soProtocolInfoW, (*byte)(unsafe.Pointer(&info)), &n)
	switch {
	case errors.Is(err, windows.WSAENOTSOCK), errors.Is(err, windows.WSAEOPNOTSUPP):
		// Wine answers WSAEOPNOTSUPP for a handle that is not a
		// socket.
		return errors.New("not a socket")
	case err != nil:
		return os.NewSyscallError("getsockopt SO_PROTOCOL_INFOW", err)
	case info.Protocol != windows.IPPROTO_TCP:
		return fmt.Errorf("socket protocol %d", info.Protocol)
	}
	return nil
}

// systemDefaults reads KeepAliveTime and KeepAliveInterval from the
// registry, each at its documented default when absent, and gives the
// fixed probe count. Windows reads them when it starts: a value changed
// since is not yet in force.
func systemDefaults() (Config, error) {
	c := Config{Idle: defaultKeepAliveTime, Interval: defaultKeepAliveInterval, Count: defaultKeepAliveCount}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, tcpipParameters, registry.QUERY_VALUE)
	if errors.Is(err, registry.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return Config{}, fmt.Errorf(`keepalive: reading HKLM\%s: %w`, tcpipParameters, err)
	}
	defer k.Close()
	for _, v := range [...]struct {
		name string
		d    *time.Duration
	}{
		{"KeepAliveTime", &c.Idle},
		{"KeepAliveInterval", &c.Interval},
	} {
		ms, _, err := k.GetIntegerValue(v.name)
		switch {
		case errors.Is(err, registry.ErrNotExist):
			continue
		case err != nil:
			return Config{}, fmt.Errorf(`keepalive: reading HKLM\%s\%s: %w`, tcpipParameters, v.name, err)
		case ms < 1 || ms > math.MaxUint32:
			// Outside the documented range 1-0xFFFFFFFF: not in force.
			continue
		}
		*v.d = time.Duration(ms) * time.Millisecond
	}
	return c, nil
}

func setInt(fd uintptr, level, opt, v int32) error {
	err := windows.Setsockopt(windows.Handle(fd), level, opt, (*byte)(unsafe.Pointer(&v)), int32(unsafe.Sizeof(v)))
	return os.NewSyscallError("setsockopt", err)
}

// getInt reads an integer option. For a boolean one (SO_KEEPALIVE)
// Windows since Vista writes a single byte although it documents a DWORD,
// and says so in the length.
func getInt(fd uintptr, level, opt int32) (int32, error) {
	var v int32
	n := int32(unsafe.Sizeof(v))
	if err := windows.Getsockopt(windows.Handle(fd), level, opt, (*byte)(unsafe.Pointer(&v)), &n); err != nil {
		return 0, os.NewSyscallError("getsockopt", err)
	}
	if n == 1 {
		return int32(*(*byte)(unsafe.Pointer(&v))), nil
	}
	return v, nil
}
