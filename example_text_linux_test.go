package keepalive_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"time"

	"github.com/keepalive-go/keepalive"
)

func ExampleParseConfig() {
	c, err := keepalive.ParseConfig("idle=60s,interval=5s,count=3,user-timeout=75s")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.Idle, c.Interval, c.Count, c.UserTimeout)
	fmt.Println(c)

	// Off, with a user timeout that stays in force.
	c, err = keepalive.ParseConfig("off,user-timeout=30s")
	fmt.Println(c.Off, c.UserTimeout, err)

	_, err = keepalive.ParseConfig("idel=60s")
	fmt.Println(err)
	_, err = keepalive.ParseConfig("idle=1.5s")
	fmt.Println(err)
	// Output:
	// 1m0s 5s 3 1m15s
	// idle=60s,interval=5s,count=3,user-timeout=75s
	// true 30s <nil>
	// keepalive: unknown key "idel" (valid keys: idle, interval, count, user-timeout, and the word off)
	// keepalive: Idle 1.5s is not a whole number of seconds
}

// A Config for clients behind an AWS Network Load Balancer, which forgets
// a flow after 350 seconds of silence, that must notice a vanished server
// within 30 seconds.
func ExampleSuggest() {
	c, err := keepalive.Suggest(350*time.Second, 30*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c)
	fmt.Println(c.DetectionTime())

	_, err = keepalive.Suggest(350*time.Second, time.Second)
	fmt.Println(err)
	// Output:
	// idle=15s,interval=5s,count=3,user-timeout=30s
	// 30s <nil>
	// keepalive: cannot notice a dead peer within 1s: the shortest Config (idle 1s, interval 1s, count 1) takes 2s
}

func ExampleConfig_SysctlConf() {
	c := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5, UserTimeout: 110 * time.Second}
	conf, err := c.SysctlConf()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(conf)
	// Output:
	// # TCP keepalive: idle=60s,interval=10s,count=5,user-timeout=110s
	// net.ipv4.tcp_keepalive_time = 60
	// net.ipv4.tcp_keepalive_intvl = 10
	// net.ipv4.tcp_keepalive_probes = 5
	// # UserTimeout 110s has no sysctl: TCP_USER_TIMEOUT is set on each socket only
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
