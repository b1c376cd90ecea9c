package keepalive

import "golang.org/x/sys/unix"

// sockopts is Linux's option table (man 7 socket, man 7 tcp).
var sockopts = [numOptions]sockopt{
	optKeepAlive:   {name: "SO_KEEPALIVE", level: unix.SOL_SOCKET, opt: unix.SO_KEEPALIVE},
	optIdle:        {name: "TCP_KEEPIDLE", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPIDLE},
	optInterval:    {name: "TCP_KEEPINTVL", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPINTVL},
	optCount:       {name: "TCP_KEEPCNT", level: unix.IPPROTO_TCP, opt: unix.TCP_KEEPCNT},
	optUserTimeout: {name: "TCP_USER_TIMEOUT", level: unix.IPPROTO_TCP, opt: unix.TCP_USER_TIMEOUT, absent: unix.EOPNOTSUPP},
}

// sysctls holds the files of the system-wide defaults (man 7 tcp).
var sysctls = [numOptions]string{
	optIdle:     "/proc/sys/net/ipv4/tcp_keepalive_time",
	optInterval: "/proc/sys/net/ipv4/tcp_keepalive_intvl",
	optCount:    "/proc/sys/net/ipv4/tcp_keepalive_probes",
}

// The files behind the retransmission timeout of a socket without a user
// timeout (man 7 tcp): the number of retransmissions, and the largest
// retransmission timeout (since Linux 6.15; 120 s before).
const (
	retriesSysctl = "/proc/sys/net/ipv4/tcp_retries2"
	rtoMaxSysctl  = "/proc/sys/net/ipv4/tcp_rto_max_ms"
)

// acceptInherits reports that a socket accepted from a listening socket
// starts with the listening socket's keepalive options and user timeout
// (net/ipv4/tcp_minisocks.c copies them into the child).
const acceptInherits = true

// platformSets reports whether Set can apply option o on this platform.
func platformSets(o option) bool { return true }

func setsockoptInt(fd uintptr, level, opt, v int) error {
	return unix.SetsockoptInt(int(fd), level, opt, v)
}

func getsockoptInt(fd uintptr, level, opt int) (int, error) {
	return unix.GetsockoptInt(int(fd), level, opt)
}
