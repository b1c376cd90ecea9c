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
// no per-socket bound on retransmission, so no user timeout.
var sockopts = [numOptions]sockopt{
	optKeepAlive: {level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE},
	optIdle:      {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE, unit: time.Second},
	optInterval:  {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL, unit: time.Second},
	optCount:     {level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT},
}

const noUserTimeout = "AIX has no socket option that bounds how long sent data may stay unacknowledged"

var supports = [numOptions]Support{
	optKeepAlive:   {Option: "SO_KEEPALIVE", Set: true, Get: true},
	optIdle:        {Option: "TCP_KEEPIDLE", Set: true, Get: true, Unit: time.Second, Min: 1, Max: 32767},
	optInterval:    {Option: "TCP_KEEPINTVL", Set: true, Get: true, Unit: time.Second, Min: 1, Max: 32767},
	optCount:       {Option: "TCP_KEEPCNT", Set: true, Get: true, Min: 1, Max: 127},
	optUserTimeout: {whySet: noUserTimeout, whyGet: noUserTimeout},
}

func support(o option) Support { return supports[o] }

// acceptInherits is false: whether an accepted socket starts with the
// listener's options is not established on AIX.
const acceptInherits = false

// defaultsReadable is false: see systemDefaults.
const defaultsReadable = false

// noDefaults says why the system defaults are not known.
const noDefaults = "AIX keeps them in the network options tcp_keepidle and tcp_keepintvl (in half-seconds) " +
	"and tcp_keepcnt, which the no command shows and no socket option reads"

func setOption(fd uintptr, o option, c, sys Config) error {
	if o == optUserTimeout {
		return unsupported(optionField[o], noUserTimeout)
	}
	v := c.get(o)
	if v == 0 && o != optKeepAlive {
		// The shared code leaves a zero field alone where the defaults
		// are unknown; AIX documents no value that restores them.
		return unsupported("putting the system's "+optionField[o]+" back", noDefaults)
	}
	return sockopts[o].set(fd, v)
}

func getOption(fd uintptr, o option) (int64, error) {
	if o == optUserTimeout {
		return 0, unsupported("reading "+optionField[o], noUserTimeout)
	}
	return sockopts[o].get(fd)
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
