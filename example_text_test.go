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

// DetectionTime takes the fields a Config leaves zero at the system's
// values, which it reads from this machine. For the defaults of another,
// here Linux's usual ones, fill them in with WithDefaults.
func ExampleConfig_DetectionTime() {
	sys := keepalive.Config{Idle: 7200 * time.Second, Interval: 75 * time.Second, Count: 9}
	for _, c := range []keepalive.Config{
		{},
		{Idle: time.Minute},
		{Idle: time.Minute, Interval: 10 * time.Second, Count: 5},
	} {
		dt, err := c.WithDefaults(sys).DetectionTime()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(dt)
	}
	// Output:
	// 2h11m15s
	// 12m15s
	// 1m50s
}

// What a connection on this machine takes to notice a vanished peer with
// the system's settings alone.
func ExampleRetransmitTimeout() {
	idle, err := keepalive.Config{}.DetectionTime()
	if err != nil {
		log.Fatal(err)
	}
	rt, err := keepalive.RetransmitTimeout()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("idle connection:", idle)
	fmt.Println("unacknowledged data: at least", rt)
}
