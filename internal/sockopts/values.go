//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package sockopts

import "time"

// Values is what getsockopt reports for a socket, in the units of
// keepalive.Config. A field is zero where the system has no such option.
type Values struct {
	KeepAlive   bool          // SO_KEEPALIVE, as set on the socket
	Idle        time.Duration // TCP_KEEPIDLE (TCP_KEEPALIVE on macOS)
	Interval    time.Duration // TCP_KEEPINTVL
	Count       int           // TCP_KEEPCNT
	UserTimeout time.Duration // TCP_USER_TIMEOUT, TCP_RXT_CONNDROPTIME on macOS, TCP_MAXUNACKTIME on FreeBSD; zero on a Multipath TCP socket, which has none
	// MPTCP reports SO_PROTOCOL == IPPROTO_MPTCP (Linux).
	MPTCP bool
}
