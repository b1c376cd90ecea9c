package enforce_test

import (
	"context"
	"fmt"
	"log"
	"net/netip"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// A policy on a service's cgroup: its connections to 10.0.0.0/8 on port
// 5432 get keepalive after 30 s idle, where the program does not set its
// own values.
func ExampleEnforce() {
	res, err := enforce.Enforce(context.Background(), enforce.Options{
		Cgroup: "/sys/fs/cgroup/system.slice/app.service",
		Config: keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 5},
		Filter: enforce.Filter{
			Remote: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			Ports:  []uint16{5432},
		},
		Wins: enforce.ProgramWins,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("in force on %s since %v; %d existing connection ends set\n", res.Policy.Cgroup, res.Policy.Since, len(res.Existing))
}

// The policies in force, and what each has set.
func ExampleList() {
	ps, err := enforce.List(context.Background(), "")
	if err != nil {
		log.Fatal(err)
	}
	for _, p := range ps {
		fmt.Printf("%s: %v, %v, set %d connections\n", p.Cgroup, p.Config, p.Filter, p.Counts.Set())
	}
}
