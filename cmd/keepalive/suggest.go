package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/keepalive-go/keepalive"
)

var suggestCommand = &command{
	name:    "suggest",
	args:    "-idle-timeout D -detect D",
	summary: "choose a Config for a path",
	help: `Prints a Config, as text that -config and keepalive.ParseConfig take, for a
path whose firewalls, NATs or load balancers forget a flow after
-idle-timeout of silence (AWS NLB 350s, Azure Load Balancer 4m, GCP Cloud
NAT 20m), when a vanished peer must be noticed within -detect; then why.

The Config has a user timeout of the same bound, so that a peer that
vanishes while data is in flight is noticed in time too. It also cuts off a
live peer that stops reading for longer: where peers may pause (a consumer
applying back-pressure, a subscriber stalled for a checkpoint), give
-no-user-timeout.`,
	examples: []example{
		{"keepalive suggest -idle-timeout 350s -detect 30s", "behind AWS NLB, a dead peer noticed within 30 seconds"},
		{"keepalive suggest -idle-timeout 4m -detect 2m -no-user-timeout", "behind Azure Load Balancer, for peers that may stop reading for a while"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		idleTimeout := durationFlag(fs, "idle-timeout", 0, "350s or 4m", "", "how long the path's middleboxes keep an idle flow, a `duration` (required)")
		detect := durationFlag(fs, "detect", 0, "30s or 2m", "", "how soon a vanished peer must be noticed, a `duration` (required)")
		noUserTimeout := boolFlag(fs, "no-user-timeout", "leave the user timeout out, for peers that may stop reading for longer than -detect")
		return func(ctx context.Context, e *env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			set := map[string]bool{}
			fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
			for _, name := range []string{"idle-timeout", "detect"} {
				if !set[name] {
					return usagef("missing -%s", name)
				}
			}
			c, err := keepalive.Suggest(*idleTimeout, *detect)
			if err != nil {
				return badConfig(err)
			}
			if *noUserTimeout {
				c.UserTimeout = 0
			}
			suggest(e, c, *idleTimeout, *detect, *noUserTimeout, "HOST:PORT")
			return nil
		}
	},
}

// suggest prints c, chosen for idleTimeout and detect, and why, and how to
// check it against addr.
func suggest(e *env, c keepalive.Config, idleTimeout, detect time.Duration, noUserTimeout bool, addr string) {
	w := e.stdout
	dt, _ := c.DetectionTime() // Suggest sets every field: no defaults are read, nothing fails
	fmt.Fprintln(w, c)
	fmt.Fprintln(w, "\nwhy:")
	fmt.Fprintf(w, "  - a vanished peer is noticed within %v of silence (idle %v + %s × interval %v); the target was %v",
		dt, c.Idle, probes(int64(c.Count)), c.Interval, detect)
	if dt < detect {
		fmt.Fprintf(w, ": sooner, as the idle timeout bounds idle")
	}
	fmt.Fprintln(w)
	second := c.Idle + c.Interval
	fmt.Fprintf(w, "  - the path stays open: the first probe goes out after %v of silence, and if it is lost the next after %v, %v before the idle timeout %v\n",
		c.Idle, second, idleTimeout-second, idleTimeout)
	if c.Count > 1 {
		fmt.Fprintf(w, "  - %d probes: %d lost in a row do not close a healthy connection\n", c.Count, c.Count-1)
	} else {
		fmt.Fprintf(w, "  - 1 probe: a single lost probe closes a healthy connection; a longer -detect allows more\n")
	}
	switch {
	case c.UserTimeout != 0:
		fmt.Fprintf(w, "  - %s: data left unacknowledged is given up on within the same time; without it, %s\n", userTimeout(c.UserTimeout), unackedBound(0))
		fmt.Fprintf(w, "  - but a live peer that stops reading for longer than %v is cut off too: for peers that may pause, -no-user-timeout\n", c.UserTimeout)
	case noUserTimeout:
		fmt.Fprintf(w, "  - no user timeout (-no-user-timeout): a peer that stops reading is never cut off, but one that vanishes with data in flight is noticed only %s\n", unackedBound(0))
	default:
		fmt.Fprintf(w, "  - no user timeout: this system has none\n")
	}
	fmt.Fprintf(w, "\ncheck it against a server: keepalive dial -config %s %s\n", c, addr)
}
