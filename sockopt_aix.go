package keepalive

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// AIX's options (<netinet/tcp.h>, numbers from x/sys): TCP_KEEPIDLE (0x11)
// and TCP_KEEPINTVL (0x12) in seconds, as Go's net package and OpenJDK pass
// them, and TCP_KEEPCNT (0x13). IBM's documentation of their ranges was not
// found: Validate takes Linux's, a range any keepalive timer holds. AIX has
// no per-socket bound on retransmission, so no user timeout. The system
// defaults cannot be read (see noDefaults): a zero field given to Set leaves
// the option as it is.
var aix = [numOptions]sockopt{
	optIdle:        {name: "TCP_KEEPIDLE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: time.Second, min: 1, max: 32767},
	optInterval:    {name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second, min: 1, max: 32767},
	optCount:       {name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT, min: 1, max: 127},
	optUserTimeout: {noSet: noUserTimeout, noGet: noUserTimeout},
	optKeepAlive:   soKeepAlive,
}

func options() *[numOptions]sockopt { return &aix }

const noUserTimeout = "AIX has no socket option that bounds how long sent data may stay unacknowledged"

// acceptInherits is false: whether an accepted socket starts with the
// listener's options is not established on AIX.
const acceptInherits = false

// defaultsReadable is false: see systemDefaults.
const defaultsReadable = false

// userTimeoutEndsProbes is false: AIX has no user timeout.
const userTimeoutEndsProbes = false

// noDefaults says why the system defaults are not known.
const noDefaults = "AIX keeps them in the network options tcp_keepidle and tcp_keepintvl (in half-seconds) " +
	"and tcp_keepcnt, which the no command shows and no socket option reads"

func setOption(fd uintptr, o option, c Config) error {
	return aix[o].set(fd, c.get(o))
}

func getOption(fd uintptr, o option) (int64, error) {
	return aix[o].get(fd)
}

func checkCombination(Config) *FieldError { return nil }

// checkTCP tells a TCP socket by its type, its address family and its
// answer to a TCP option: AIX has no SO_PROTOCOL.
func checkTCP(fd uintptr) error {
	typ, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	switch {
	case errors.Is(err, unix.ENOTSOCK):
		return errors.New("not a socket")
	case err != nil:
		return os.NewSyscallError("getsockopt SO_TYPE", err)
	case typ != unix.SOCK_STREAM:
		return fmt.Errorf("socket type %d", typ)
	}
	sa, err := unix.Getsockname(int(fd))
	if err != nil {
		return os.NewSyscallError("getsockname", err)
	}
	switch sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
	default:
		return fmt.Errorf("socket address %T", sa)
	}
	if _, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPIDLE); err != nil {
		return fmt.Errorf("a stream socket without TCP options: %w", os.NewSyscallError("getsockopt TCP_KEEPIDLE", err))
	}
	return nil
}

func systemDefaults() (Config, error) {
	return Config{}, fmt.Errorf("keepalive: %w", unsupported("reading the system defaults", noDefaults))
}

func retransmitLimit() (time.Duration, error) {
	return 0, fmt.Errorf("keepalive: %w", unsupported("reading the retransmission timeout",
		"AIX bounds retransmission with network options of its own, which this package does not model"))
}

func sysctlConf(Config) (string, error) {
	return "", fmt.Errorf("keepalive: %w", unsupported("writing sysctl lines",
		"AIX has no sysctls: it keeps its keepalive defaults in network options, which the no command sets"))
}

func backoffLimit(time.Duration) (time.Duration, bool) { return 0, false }
