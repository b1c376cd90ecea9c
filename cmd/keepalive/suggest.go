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
NAT 20m), when a vanished peer must be noticed within -detect; then why.`,
	examples: []example{
		{"keepalive suggest -idle-timeout 350s -detect 30s", "behind AWS NLB, a dead peer noticed within 30 seconds"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		idleTimeout := durationFlag(fs, "idle-timeout", 0, "350s or 4m", "", "how long the path's middleboxes keep an idle flow, a `duration` (required)")
		detect := durationFlag(fs, "detect", 0, "30s or 2m", "", "how soon a vanished peer must be noticed, a `duration` (required)")
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
			suggest(e, c, *idleTimeout, *detect)
			return nil
		}
	},
}

// suggest prints c, chosen for idleTimeout and detect, and why.
func suggest(e *env, c keepalive.Config, idleTimeout, detect time.Duration) {
	w := e.stdout
	dt := c.DetectionTime(keepalive.Config{})
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
	if c.UserTimeout != 0 {
		fmt.Fprintf(w, "  - %s: data left unacknowledged is given up on within the same time; without it, %s\n", userTimeout(c.UserTimeout), unackedBound(0))
	} else {
		fmt.Fprintf(w, "  - no user timeout: this system has no TCP_USER_TIMEOUT\n")
	}
	fmt.Fprintf(w, "\ncheck it against a server: keepalive dial -config %s HOST:PORT\n", c)
}
