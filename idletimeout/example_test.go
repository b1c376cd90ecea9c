package idletimeout_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/keepalive-go/keepalive/idletimeout"
)

// A service measures the path to its message broker at start-up, and
// sets its keepalive from the answer: from the path's timeout when one
// was measured, from the silence it is known to keep otherwise.
func ExampleFind() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	r, err := idletimeout.Find(ctx, "kafka.internal:9092", idletimeout.Options{
		Max: 10 * time.Minute,
		Progress: func(p idletimeout.Progress) {
			log.Printf("%v: %d connections, kept %v, lost %v", p.Elapsed.Round(time.Second), p.Open, p.Survived, p.Died)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	switch r.Cause {
	case idletimeout.CauseDrop, idletimeout.CauseReset:
		fmt.Printf("the path keeps an idle flow for %v, and loses it after %v (%v)\n", r.Survived, r.Died, r.Cause)
	case idletimeout.CauseServerClose:
		fmt.Printf("the server ends idle connections after %v (%v); the path keeps them at least %v\n", r.Died, r.End, r.Survived)
	default:
		fmt.Printf("the path keeps idle flows at least %v\n", r.Survived)
	}
	c, err := r.Suggest(2 * time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("keepalive:", c)
}

// Plan tells what a search costs before it starts: the connections it
// holds open at once and the passes it may take.
func ExamplePlan() {
	for _, o := range []idletimeout.Options{
		{},
		{Max: 5 * time.Minute},
		{Flows: 50},
		{Flows: 8},
	} {
		flows, passes, err := idletimeout.Plan(o)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("max %v, flows %d: %d connections, %d pass(es)\n", o.Max, o.Flows, flows, passes)
	}
	// Output:
	// max 0s, flows 0: 331 connections, 1 pass(es)
	// max 5m0s, flows 0: 167 connections, 1 pass(es)
	// max 0s, flows 50: 50 connections, 2 pass(es)
	// max 0s, flows 8: 8 connections, 4 pass(es)
}
