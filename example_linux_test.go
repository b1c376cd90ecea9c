package keepalive_test

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/keepalive-go/keepalive"
)

// The examples whose output holds Linux's limits.

func ExampleConfig_Validate() {
	c := keepalive.Config{Idle: 10 * time.Hour, Interval: 1500 * time.Millisecond, Count: 128}
	err := c.Validate()
	fmt.Println(err)

	// Each field at fault is a FieldError, found by errors.As, with its
	// value and range as the Config holds them.
	var ve *keepalive.ValidationError
	if errors.As(err, &ve) {
		for _, fe := range ve.Errors {
			if fe.Field == "Count" {
				fmt.Printf("%s=%d want %d..%d: %v\n", fe.Field, fe.Value, fe.Min, fe.Max, fe.Err)
				continue
			}
			fmt.Printf("%s=%v want %v..%v: %v\n", fe.Field, time.Duration(fe.Value), time.Duration(fe.Min), time.Duration(fe.Max), fe.Err)
		}
	}
	var fe *keepalive.FieldError
	if errors.As(err, &fe) && errors.Is(fe, keepalive.ErrOutOfRange) {
		fmt.Println("first:", fe.Field)
	}
	// Output:
	// keepalive: Idle 36000s is out of range 1s..32767s; Interval 1.5s is not a whole number of seconds; Count 128 is out of range 1..127
	// Idle=10h0m0s want 1s..9h6m7s: out of range
	// Interval=1.5s want 1s..9h6m7s: not a whole number of the unit
	// Count=128 want 1..127: out of range
	// first: Idle
}

func ExampleFromKeepAliveConfig() {
	// In a net.KeepAliveConfig zero means Go's default: 15s, 15s, 9.
	c, err := keepalive.FromKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second})
	fmt.Println(c.Idle, c.Interval, c.Count, err)

	// A negative field leaves the socket's value, as zero does in a Config.
	c, err = keepalive.FromKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: -1, Count: -1})
	fmt.Println(c.Idle, c.Interval, c.Count, err)

	// Enable false is Off; the standard library still writes the values.
	c, err = keepalive.FromKeepAliveConfig(net.KeepAliveConfig{Enable: false})
	fmt.Println(c, err)

	// The standard library would round this up to 3s; a Config refuses it.
	_, err = keepalive.FromKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 2500 * time.Millisecond})
	fmt.Println(err)
	// Output:
	// 30s 15s 9 <nil>
	// 30s 0s 0 <nil>
	// off,idle=15s,interval=15s,count=9 <nil>
	// keepalive: Idle 2.5s is not a whole number of seconds
}
