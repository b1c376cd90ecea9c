package keepalive_test

import (
	"encoding/json"
	"flag"
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

// A Config is a string in JSON, and so in YAML or an environment variable.
func ExampleConfig_MarshalText() {
	type settings struct {
		Addr      string           `json:"addr"`
		Keepalive keepalive.Config `json:"keepalive"`
	}
	b, err := json.Marshal(settings{Addr: "db.internal:5432", Keepalive: keepalive.Config{Idle: time.Minute, Interval: 10 * time.Second, Count: 5}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(b))

	var s settings
	err = json.Unmarshal([]byte(`{"addr":"db.internal:5432","keepalive":"idle=30s,count=3"}`), &s)
	fmt.Println(s.Keepalive.Idle, s.Keepalive.Interval, s.Keepalive.Count, err)

	err = json.Unmarshal([]byte(`{"keepalive":"idle=30s,count=300"}`), &s)
	fmt.Println(err)
	// Output:
	// {"addr":"db.internal:5432","keepalive":"idle=60s,interval=10s,count=5"}
	// 30s 0s 3 <nil>
	// keepalive: Count 300 is out of range 1..127
}

// A Config is a command-line flag through flag.TextVar.
func ExampleConfig_UnmarshalText() {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	var c keepalive.Config
	fs.TextVar(&c, "keepalive", keepalive.Config{Idle: time.Minute}, "TCP keepalive, such as idle=60s,interval=5s,count=3")

	if err := fs.Parse([]string{"-keepalive", "idle=45s,interval=5s,count=3"}); err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Idle, c.Interval, c.Count)
	// Output:
	// 45s 5s 3
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
