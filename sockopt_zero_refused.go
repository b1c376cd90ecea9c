//go:build dragonfly || netbsd

package keepalive

import "errors"

// setOption sets o on a kernel that refuses zero and has no user timeout;
// each OS's file says why in noUserTimeout.
func setOption(fd uintptr, o option, c, sys Config) error {
	switch o {
	case optKeepAlive:
		return setKeepAlive(fd, !c.Off)
	case optUserTimeout:
		return unsupported("UserTimeout", noUserTimeout)
	}
	return setRefusingZero(fd, sockopts[o], o, c, sys)
}

// setRefusingZero writes o's value in c through so on a kernel that refuses
// zero (NetBSD, DragonFly): a zero field, the system default, is written as
// the default's value in sys, which is what a new socket holds.
func setRefusingZero(fd uintptr, so sockopt, o option, c, sys Config) error {
	v := c.get(o)
	if v == 0 {
		if v = sys.get(o); v == 0 {
			return errors.New("the system default is not known")
		}
	}
	return so.set(fd, v)
}
