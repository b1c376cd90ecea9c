//go:build dragonfly || netbsd

package keepalive

import "errors"

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
