//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package keepalive

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// What macOS and the BSDs share: their sysctls, read with sysctl(3);
// SO_KEEPALIVE, which a sysctl may override; and the test for a TCP socket
// by its type and address family.

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
// DragonFly and OpenBSD have it; FreeBSD and DragonFly set it by default).
const alwaysKeepAlive = "net.inet.tcp.always_keepalive"

var soKeepAlive = sockopt{level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE}

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
