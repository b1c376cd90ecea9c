package bpfsock

import "strings"

// Options is a set of the socket options a policy sets, one bit each.
type Options uint32

const (
	KeepAlive   Options = 1 << iota // SO_KEEPALIVE
	Idle                            // TCP_KEEPIDLE
	Interval                        // TCP_KEEPINTVL
	Count                           // TCP_KEEPCNT
	UserTimeout                     // TCP_USER_TIMEOUT

	AllOptions = KeepAlive | Idle | Interval | Count | UserTimeout
)

var optionNames = [...]string{"keepalive", "idle", "interval", "count", "user-timeout"}

// String lists the options by the names of the Config's text form, with
// "keepalive" for SO_KEEPALIVE: "keepalive,idle". The empty set is "none".
func (o Options) String() string {
	var names []string
	for i, n := range optionNames {
		if o&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}
