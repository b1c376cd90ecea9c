//go:build !linux

package keepalive

import (
	"errors"
	"runtime"
)

// sockopts is empty: off Linux no option is set or read on a file
// descriptor; Set goes through net.TCPConn.SetKeepAliveConfig instead.
var sockopts [numOptions]sockopt

// sysctls is empty: the system defaults are read on Linux only.
var sysctls [numOptions]string

// No retransmission timeout sysctls: they are read on Linux only.
const (
	retriesSysctl = ""
	rtoMaxSysctl  = ""
)

// acceptInherits is false: whether accepted sockets inherit the listening
// socket's options is not established here, so ListenConfig sets them on
// every accepted connection.
const acceptInherits = false

// cannotSet lists, by GOOS, the options net.TCPConn.SetKeepAliveConfig
// cannot set there (net/tcpsockopt_openbsd.go, tcpsockopt_stub.go,
// tcpsockopt_plan9.go). TCP_USER_TIMEOUT exists on Linux only.
var cannotSet = map[string][numOptions]bool{
	"openbsd": {optIdle: true, optInterval: true, optCount: true},
	"plan9":   {optKeepAlive: true, optIdle: true, optInterval: true, optCount: true},
	"js":      {optKeepAlive: true, optIdle: true, optInterval: true, optCount: true},
	"wasip1":  {optKeepAlive: true, optIdle: true, optInterval: true, optCount: true},
}

// platformSets reports whether Set can apply option o on this platform.
func platformSets(o option) bool {
	return o != optUserTimeout && !cannotSet[runtime.GOOS][o]
}

func setsockoptInt(fd uintptr, level, opt, v int) error { return errors.ErrUnsupported }

func getsockoptInt(fd uintptr, level, opt int) (int, error) { return 0, errors.ErrUnsupported }
