//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package keepalive

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// What macOS and the BSDs share: sysctl(3); SO_KEEPALIVE, which a sysctl
// may override; the test for a TCP socket by its type and address family;
// and the answers of the contract that are the same for all of them. Each
// system's own table and mechanism is in its sockopt_GOOS.go; the defaults
// that sysctls hold are read in sysctls_bsd.go, the clock rate that bounds
// some systems' timers in clockrate_bsd.go.

// acceptInherits is false on each of them, for its own reason: macOS gives
// an accepted socket the system's idle time and no TCP_RXT_CONNDROPTIME
// whatever the listening socket holds (tcp_input.c copies only the interval
// and the count); NetBSD's syn_cache_get gives it the system's values;
// FreeBSD's and DragonFly's syncache_socket copy the listening socket's
// options, but that is read from source, not proven here; OpenBSD has
// nothing per socket to inherit but SO_KEEPALIVE.
const acceptInherits = false

// defaultsReadable reports that systemDefaults reads the sysctls, or on
// DragonFly a new socket.
const defaultsReadable = true

// userTimeoutEndsProbes is false: the user timeouts of macOS and FreeBSD
// bound unacknowledged data only, and the others have none.
const userTimeoutEndsProbes = false

func retransmitLimit() (time.Duration, error) {
	return 0, fmt.Errorf("keepalive: %w", unsupported("reading the retransmission timeout",
		"macOS and the BSDs bound retransmission with sysctls and timers of their own, which this package does not model"))
}

func sysctlConf(Config) (string, error) {
	return "", fmt.Errorf("keepalive: %w", unsupported("writing sysctl lines",
		"the lines name Linux's sysctls; macOS and the BSDs keep their defaults in net.inet.tcp.keepidle and its siblings, in units of their own"))
}

// backoffLimit reports false: a socket always has an interval and a count,
// its own or the system's.
func backoffLimit(time.Duration) (time.Duration, bool) { return 0, false }

// sysctlInt reads the integer (a C int) sysctl name.
func sysctlInt(name string) (int64, error) {
	n, err := unix.SysctlUint32(name)
	if err != nil {
		return 0, fmt.Errorf("keepalive: sysctl %s: %w", name, err)
	}
	return int64(int32(n)), nil
}

// alwaysKeepAlive is the sysctl that, at 1, makes the kernel probe every
// idle connection whether or not its SO_KEEPALIVE is on (macOS, FreeBSD,
// DragonFly and OpenBSD have it; FreeBSD and DragonFly set it by default;
// NetBSD has none).
const alwaysKeepAlive = "net.inet.tcp.always_keepalive"

// keepAliveForced reports whether the kernel probes every connection
// whatever SO_KEEPALIVE says.
func keepAliveForced() (bool, error) {
	n, err := sysctlInt(alwaysKeepAlive)
	if errors.Is(err, unix.ENOENT) {
		return false, nil // no such sysctl: SO_KEEPALIVE decides
	}
	return n != 0, err
}

// setKeepAlive turns SO_KEEPALIVE on or off. Off fails, wrapping
// errors.ErrUnsupported, where the system probes every connection anyway
// (keepAliveForced): it could not take effect.
func setKeepAlive(fd uintptr, on bool) error {
	if on {
		return soKeepAlive.set(fd, 1)
	}
	forced, err := keepAliveForced()
	switch {
	case err != nil:
		return err
	case forced:
		return unsupported("turning keepalive off", alwaysKeepAlive+" is 1, so the kernel probes every idle connection whatever SO_KEEPALIVE says")
	}
	return soKeepAlive.set(fd, 0)
}

// getKeepAlive reads SO_KEEPALIVE: 1 for on, 0 for off. It reports on
// where the system probes every connection anyway, as it does.
func getKeepAlive(fd uintptr) (int64, error) {
	v, err := soKeepAlive.get(fd)
	if err != nil || v != 0 {
		return v, err
	}
	forced, err := keepAliveForced()
	if err != nil || !forced {
		return 0, err
	}
	return 1, nil
}

// checkStreamInet reports why fd is not a TCP socket, by its type and
// address family: a stream socket of AF_INET or AF_INET6 is TCP's on these
// systems (macOS puts Multipath TCP in a family of its own, AF_MULTIPATH),
// except SCTP's where the kernel has SCTP, which FreeBSD tells apart with
// SO_PROTOCOL and NetBSD, without SO_PROTOCOL, cannot.
func checkStreamInet(fd uintptr) error {
	t, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
	switch {
	case errors.Is(err, unix.ENOTSOCK):
		return errors.New("not a socket")
	case err != nil:
		return os.NewSyscallError("getsockopt SO_TYPE", err)
	case t != unix.SOCK_STREAM:
		return fmt.Errorf("socket type %d", t)
	}
	sa, err := unix.Getsockname(int(fd))
	switch sa.(type) {
	case *unix.SockaddrInet4, *unix.SockaddrInet6:
		return nil
	case *unix.SockaddrUnix:
		return errors.New("a unix domain socket")
	}
	if err != nil && !errors.Is(err, unix.EAFNOSUPPORT) {
		return os.NewSyscallError("getsockname", err)
	}
	// x/sys answers EAFNOSUPPORT for a family it does not know.
	return errors.New("not an AF_INET or AF_INET6 socket")
}
