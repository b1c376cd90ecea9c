package keepalive

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Linux's options (man 7 socket, man 7 tcp) and their limits
// (include/net/tcp.h: MAX_TCP_KEEPIDLE, MAX_TCP_KEEPINTVL, MAX_TCP_KEEPCNT;
// TCP_USER_TIMEOUT takes a non-negative int of milliseconds, zero for
// none).
var sockopts = [numOptions]sockopt{
	optKeepAlive:   {level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE},
	optIdle:        {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: time.Second},
	optInterval:    {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second},
	optCount:       {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT},
	optUserTimeout: {level: unix.IPPROTO_TCP, opt: unix.TCP_USER_TIMEOUT, unit: time.Millisecond},
}

var supports = [numOptions]Support{
	optKeepAlive:   {Option: "SO_KEEPALIVE", Set: true, Get: true},
	optIdle:        {Option: "TCP_KEEPIDLE", Set: true, Get: true, Unit: time.Second, Min: 1, Max: 32767},
	optInterval:    {Option: "TCP_KEEPINTVL", Set: true, Get: true, Unit: time.Second, Min: 1, Max: 32767},
	optCount:       {Option: "TCP_KEEPCNT", Set: true, Get: true, Min: 1, Max: 127},
	optUserTimeout: {Option: "TCP_USER_TIMEOUT", Set: true, Get: true, Unit: time.Millisecond, Min: 1, Max: 1<<31 - 1},
}

func support(o option) Support { return supports[o] }

// acceptInherits reports that a socket accepted from a listening socket
// starts with the listening socket's keepalive options and user timeout
// (net/ipv4/tcp_minisocks.c copies them into the child), with Multipath TCP
// too.
const acceptInherits = true

// defaultsReadable reports that systemDefaults reads the sysctls.
const defaultsReadable = true

func setOption(fd uintptr, o option, c, sys Config) error {
	v := c.get(o)
	if v == 0 && o != optKeepAlive && o != optUserTimeout {
		// Linux cannot unset an option: write the default's value.
		v = sys.get(o)
	}
	err := sockopts[o].set(fd, v)
	if o == optUserTimeout && errors.Is(err, unix.ENOPROTOOPT) && isMultipath(fd) {
		return fmt.Errorf("a Multipath TCP socket has no user timeout: %w", err)
	}
	return err
}

func getOption(fd uintptr, o option) (int64, error) {
	v, err := sockopts[o].get(fd)
	if o == optUserTimeout && errors.Is(err, unix.EOPNOTSUPP) && isMultipath(fd) {
		// A Multipath TCP socket has no user timeout: none is in force.
		return 0, nil
	}
	return v, err
}

func checkCombination(Config) *FieldError { return nil }

// isMultipath reports whether fd is a Multipath TCP socket.
func isMultipath(fd uintptr) bool {
	p, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	return err == nil && p == unix.IPPROTO_MPTCP
}

// checkTCP reports why fd is not a TCP (or Multipath TCP) socket.
func checkTCP(fd uintptr) error {
	p, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	switch {
	case errors.Is(err, unix.ENOTSOCK):
		return errors.New("not a socket")
	case err != nil:
		return os.NewSyscallError("getsockopt SO_PROTOCOL", err)
	case p != unix.IPPROTO_TCP && p != unix.IPPROTO_MPTCP:
		return fmt.Errorf("socket protocol %d", p)
	}
	return nil
}

// sysctls holds the files of the system-wide defaults (man 7 tcp), in
// seconds for the durations.
var sysctls = [...]struct {
	o    option
	path string
}{
	{optIdle, "/proc/sys/net/ipv4/tcp_keepalive_time"},
	{optInterval, "/proc/sys/net/ipv4/tcp_keepalive_intvl"},
	{optCount, "/proc/sys/net/ipv4/tcp_keepalive_probes"},
}

// systemDefaults reads the sysctls of the caller's network namespace. By
// default there is no user timeout.
func systemDefaults() (Config, error) {
	var c Config
	for _, s := range sysctls {
		n, err := readSysctl(s.path)
		if err != nil {
			return Config{}, err
		}
		c = c.with(s.o, int64(n)*int64(max(sockopts[s.o].unit, 1)))
	}
	return c, nil
}

// readSysctl reads the integer in the file at path.
func readSysctl(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("keepalive: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("keepalive: %s: %w", path, err)
	}
	return n, nil
}
