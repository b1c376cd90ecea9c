//go:build !illumos

package sockopts

// Oracle Solaris 11.4 <netinet/tcp.h>: not illumos's numbers, which x/sys
// has; earlier releases have neither option.
const (
	tcpKeepIntvl = 0x1E
	tcpKeepCnt   = 0x1F
)
