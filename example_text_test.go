package keepalive_test

import (
	"fmt"
	"log"
	"time"

	"github.com/keepalive-go/keepalive"
)

func ExampleConfig_String() {
	c := keepalive.Config{Idle: 2 * time.Minute, Interval: 30 * time.Second, Count: 4}
	fmt.Println(c)
	fmt.Printf("%q\n", keepalive.Config{}.String())
	// Output:
	// idle=120s,interval=30s,count=4
	// ""
}

// DetectionTime fills the fields a Config leaves zero from the system's
// values: here Linux's usual ones, which SystemDefaults reads from the
// machine.
func ExampleConfig_DetectionTime() {
	sys := keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}
	fmt.Println(keepalive.Config{}.DetectionTime(sys))
	fmt.Println(keepalive.Config{Idle: time.Minute}.DetectionTime(sys))
	fmt.Println(keepalive.Config{Idle: time.Minute, Interval: 10 * time.Second, Count: 5}.DetectionTime(sys))
	// Output:
	// 2h11m15s
	// 12m15s
	// 1m50s
}

// What a connection on this machine takes to notice a vanished peer with
// the system's settings alone.
func ExampleRetransmitTimeout() {
	sys, err := keepalive.SystemDefaults()
	if err != nil {
		log.Fatal(err)
	}
	rt, err := keepalive.RetransmitTimeout()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("idle connection:", keepalive.Config{}.DetectionTime(sys))
	fmt.Println("unacknowledged data: at least", rt)
}
