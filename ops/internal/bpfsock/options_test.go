package bpfsock

import "testing"

func TestOptionsString(t *testing.T) {
	for _, tt := range []struct {
		o    Options
		want string
	}{
		{0, "none"},
		{KeepAlive, "keepalive"},
		{KeepAlive | Idle, "keepalive,idle"},
		{Interval | UserTimeout, "interval,user-timeout"},
		{AllOptions, "keepalive,idle,interval,count,user-timeout"},
	} {
		if got := tt.o.String(); got != tt.want {
			t.Errorf("Options(%#x).String() = %q; want %q", uint32(tt.o), got, tt.want)
		}
	}
}
