package sockopts

import "golang.org/x/sys/unix"

// illumos's numbers, which x/sys has.
const (
	tcpKeepIntvl = unix.TCP_KEEPINTVL
	tcpKeepCnt   = unix.TCP_KEEPCNT
)
