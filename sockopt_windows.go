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

// Windows' options (learn.microsoft.com, "IPPROTO_TCP socket options",
// "SO_KEEPALIVE socket option", "SIO_KEEPALIVE_VALS control code"):
// TCP_KEEPIDLE and TCP_KEEPINTVL in seconds since Windows 10 version 1709,
// TCP_KEEPCNT (at most 255) since version 1703, TCP_MAXRT in seconds since
// Vista. Before 1709 the idle time and interval are set together, in
// milliseconds, with the SIO_KEEPALIVE_VALS ioctl, which cannot be read
// back, and the probe count is fixed at 10. Wine (8.0 at least) answers
// TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_MAXRT with
// WSAENOPROTOOPT as the older versions do, whatever version it reports. So
// this file decides what it uses by trying the options on a socket once per
// process (probe), and falls back to SIO_KEEPALIVE_VALS per socket too.
var sockopts = [numOptions]sockopt{
	optKeepAlive:   {level: windows.SOL_SOCKET, opt: windows.SO_KEEPALIVE},
	optIdle:        {level: windows.IPPROTO_TCP, opt: windows.TCP_KEEPIDLE, unit: time.Second},
	optInterval:    {level: windows.IPPROTO_TCP, opt: windows.TCP_KEEPINTVL, unit: time.Second},
	optCount:       {level: windows.IPPROTO_TCP, opt: windows.TCP_KEEPCNT},
	optUserTimeout: {level: windows.IPPROTO_TCP, opt: windows.TCP_MAXRT, unit: time.Second},
}

// soProtocolInfoW is SO_PROTOCOL_INFOW (winsock2.h), which x/sys/windows
// does not define: getsockopt fills a WSAPROTOCOL_INFOW with the socket's
// address family, type and protocol.
const soProtocolInfoW = 0x2005

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

// probeResult is what trying the options on a new TCP socket found: nil
// where an option works, else why it does not.
type probeResult struct {
	// setTimes and getTimes: setting and reading TCP_KEEPIDLE and
	// TCP_KEEPINTVL; without them Idle and Interval go through
	// SIO_KEEPALIVE_VALS.
	setTimes, getTimes error
	setCount, getCount error // TCP_KEEPCNT
	setMaxRT, getMaxRT error // TCP_MAXRT
	// maxRTDefault is TCP_MAXRT on a new socket: what a zero UserTimeout
	// writes back, and what Get reports as zero.
	maxRTDefault int32
}

var probed = sync.OnceValue(probe)

// probe tries TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and TCP_MAXRT on a
// new TCP socket, as the standard library does for the first three: an
// option that cannot be set is missing from this system.
func probe() probeResult {
	s, err := windows.Socket(windows.AF_INET, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	if err != nil {
		s, err = windows.Socket(windows.AF_INET6, windows.SOCK_STREAM, windows.IPPROTO_TCP)
	}
	if err != nil {
		// Without a socket to try them on, assume the oldest: what
		// every Windows since 2000 has.
		err = fmt.Errorf("no TCP socket to try the options on: %w", os.NewSyscallError("socket", err))
		return probeResult{setTimes: err, getTimes: err, setCount: err, getCount: err, setMaxRT: err, getMaxRT: err}
	}
	defer windows.Closesocket(s)
	fd := uintptr(s)

	var p probeResult
	p.setTimes = trySet(fd, optIdle, 1)
	if p.setTimes == nil {
		p.setTimes = trySet(fd, optInterval, 1)
	}
	p.getTimes = p.setTimes
	if p.getTimes == nil {
		p.getTimes = tryGet(fd, optIdle, 1)
	}
	if p.getTimes == nil {
		p.getTimes = tryGet(fd, optInterval, 1)
	}

	p.setCount = trySet(fd, optCount, 1)
	p.getCount = p.setCount
	if p.getCount == nil {
		p.getCount = tryGet(fd, optCount, 1)
	}

	// TCP_MAXRT: its value on a new socket is the default; setting it
	// must work for a value and for the default, so that a zero
	// UserTimeout can be written back.
	so := sockopts[optUserTimeout]
	p.maxRTDefault, p.getMaxRT = getInt(fd, so.level, so.opt)
	p.setMaxRT = p.getMaxRT
	if p.setMaxRT == nil {
		p.setMaxRT = trySet(fd, optUserTimeout, 1)
	}
	if p.setMaxRT == nil {
		p.getMaxRT = tryGet(fd, optUserTimeout, 1)
		if err := setInt(fd, so.level, so.opt, p.maxRTDefault); err != nil {
			p.setMaxRT = fmt.Errorf("putting its default %d back: %w", p.maxRTDefault, err)
		}
	}
	return p
}

// trySet sets option o to n (seconds for a duration) on fd.
func trySet(fd uintptr, o option, n int32) error {
	so := sockopts[o]
	return setInt(fd, so.level, so.opt, n)
}

// tryGet reads option o on fd, which must hold n.
func tryGet(fd uintptr, o option, n int32) error {
	so := sockopts[o]
	v, err := getInt(fd, so.level, so.opt)
	if err == nil && v != n {
		err = fmt.Errorf("%s reads %d after it was set to %d", supportName(o), v, n)
	}
	return err
}

// supportName names the option that carries o where the system has it.
func supportName(o option) string {
	switch o {
	case optIdle:
		return "TCP_KEEPIDLE"
	case optInterval:
		return "TCP_KEEPINTVL"
	case optCount:
		return "TCP_KEEPCNT"
	case optUserTimeout:
		return "TCP_MAXRT"
	}
	return "SO_KEEPALIVE"
}

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

func support(o option) Support {
	p := probed()
	switch o {
	case optKeepAlive:
		return Support{Option: "SO_KEEPALIVE", Set: true, Get: true}
	case optIdle, optInterval:
		if p.setTimes == nil {
			s := Support{Option: supportName(o), Set: true, Get: p.getTimes == nil, Unit: time.Second, Min: 1, Max: maxKeepAliveTime}
			if !s.Get {
				s.whyGet = unreadable(supportName(o), p.getTimes)
			}
			return s
		}
		return Support{
			Option: "SIO_KEEPALIVE_VALS", Set: true, Unit: time.Second, Min: 1, Max: maxKeepAliveTime,
			whyGet: "the idle time and interval are set with SIO_KEEPALIVE_VALS, which cannot be read back; " +
				missing("TCP_KEEPIDLE and TCP_KEEPINTVL", p.setTimes, "Windows before 10 version 1709 and Wine do"),
		}
	case optCount:
		if p.setCount == nil {
			s := Support{Option: "TCP_KEEPCNT", Set: true, Get: p.getCount == nil, Min: 1, Max: maxKeepAliveCnt}
			if !s.Get {
				s.whyGet = unreadable("TCP_KEEPCNT", p.getCount)
			}
			return s
		}
		why := missing("TCP_KEEPCNT", p.setCount, "Windows before 10 version 1703 and Wine do") +
			"; Windows sends 10 probes, which cannot be changed"
		return Support{whySet: why, whyGet: why}
	}
	if p.setMaxRT == nil {
		s := Support{Option: "TCP_MAXRT", Set: true, Get: p.getMaxRT == nil, Unit: time.Second, Min: 1, Max: maxRetransmit}
		if !s.Get {
			s.whyGet = unreadable("TCP_MAXRT", p.getMaxRT)
		}
		return s
	}
	why := missing("TCP_MAXRT", p.setMaxRT, "Wine does (Windows has it since Vista)")
	return Support{whySet: why, whyGet: why}
}

// acceptInherits is false: whether a socket accepted with AcceptEx takes
// the listening socket's keepalive options when SO_UPDATE_ACCEPT_CONTEXT
// is set is not documented.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads the registry, or
// knows the documented defaults.
const defaultsReadable = true

func setOption(fd uintptr, o option, c, sys Config) error {
	p := probed()
	switch o {
	case optIdle, optInterval:
		if p.setTimes == nil {
			v, err := orDefault(o, c, sys)
			if err != nil {
				return err
			}
			err = sockopts[o].set(fd, v)
			if !errors.Is(err, windows.WSAENOPROTOOPT) {
				return err
			}
			// This socket lacks the option although the system has
			// it (a layered service provider may): set the idle time
			// and interval together.
		}
		return setKeepAliveVals(fd, c, sys)
	case optCount:
		v, err := orDefault(o, c, sys)
		if err != nil {
			return err
		}
		err = sockopts[o].set(fd, v)
		if errors.Is(err, windows.WSAENOPROTOOPT) {
			return fmt.Errorf("%w (%w)", unsupported("Count", "this socket refuses TCP_KEEPCNT"), err)
		}
		return err
	case optUserTimeout:
		v := int32(c.UserTimeout / time.Second)
		if v == 0 {
			// No user timeout: TCP_MAXRT as a new socket has it.
			v = p.maxRTDefault
		}
		so := sockopts[o]
		err := setInt(fd, so.level, so.opt, v)
		if errors.Is(err, windows.WSAENOPROTOOPT) {
			return fmt.Errorf("%w (%w)", unsupported("UserTimeout", "this socket refuses TCP_MAXRT"), err)
		}
		return err
	}
	if !c.Off && p.setTimes != nil {
		// Turn keepalive on with the times, so that it never runs with
		// others than c's.
		return setKeepAliveVals(fd, c, sys)
	}
	return sockopts[o].set(fd, c.get(o))
}

// orDefault returns c's value of o, or the system default where it is
// zero: sys's, or the one systemDefaults reads when sys does not hold it.
func orDefault(o option, c, sys Config) (int64, error) {
	if v := c.get(o); v != 0 {
		return v, nil
	}
	if v := sys.get(o); v != 0 {
		return v, nil
	}
	d, err := systemDefaults()
	if err != nil {
		return 0, err
	}
	return d.get(o), nil
}

// setKeepAliveVals sets c's Idle and Interval with SIO_KEEPALIVE_VALS,
// which takes both, each zero one at the system default, and turns
// keepalive on: with onoff 0 Windows ignores the times. For an Off Config,
// SO_KEEPALIVE, which the apply path writes last, turns it off again and
// leaves the times for when it is turned on.
func setKeepAliveVals(fd uintptr, c, sys Config) error {
	idle, err := orDefault(optIdle, c, sys)
	if err != nil {
		return err
	}
	interval, err := orDefault(optInterval, c, sys)
	if err != nil {
		return err
	}
	ka := windows.TCPKeepalive{
		OnOff:    1,
		Time:     uint32(idle / int64(time.Millisecond)),
		Interval: uint32(interval / int64(time.Millisecond)),
	}
	var n uint32
	err = windows.WSAIoctl(windows.Handle(fd), windows.SIO_KEEPALIVE_VALS,
		(*byte)(unsafe.Pointer(&ka)), uint32(unsafe.Sizeof(ka)), nil, 0, &n, nil, 0)
	return os.NewSyscallError("WSAIoctl SIO_KEEPALIVE_VALS", err)
}

func getOption(fd uintptr, o option) (int64, error) {
	if o != optUserTimeout {
		v, err := sockopts[o].get(fd)
		if errors.Is(err, windows.WSAENOPROTOOPT) {
			// The system has the option, this socket does not: the
			// values were set with SIO_KEEPALIVE_VALS.
			return 0, fmt.Errorf("%w (%w)", unsupported("reading "+optionField[o]+" back", "this socket refuses "+supportName(o)), err)
		}
		if o == optKeepAlive && v != 0 {
			v = 1
		}
		return v, err
	}
	so := sockopts[o]
	v, err := getInt(fd, so.level, so.opt)
	switch {
	case err != nil:
		return 0, err
	case v == probed().maxRTDefault:
		return 0, nil
	case v < 0:
		return 0, fmt.Errorf("TCP_MAXRT is %d (retransmit forever), which a Config cannot express", v)
	}
	return int64(v) * int64(time.Second), nil
}

func checkCombination(Config) *FieldError { return nil }

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

// sockopt is an integer socket option and the unit of its value.
type sockopt struct {
	level, opt int32
	// unit is the unit of a duration's value; zero for a count or a
	// flag.
	unit time.Duration
}

// set writes v, in Config.get's units, to the option on fd.
func (so sockopt) set(fd uintptr, v int64) error {
	if so.unit != 0 {
		v /= int64(so.unit)
	}
	return setInt(fd, so.level, so.opt, int32(v))
}

// get reads the option on fd, in Config.get's units.
func (so sockopt) get(fd uintptr) (int64, error) {
	n, err := getInt(fd, so.level, so.opt)
	if err != nil {
		return 0, err
	}
	if so.unit != 0 {
		return int64(n) * int64(so.unit), nil
	}
	return int64(n), nil
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
