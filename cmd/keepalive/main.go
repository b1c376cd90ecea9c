// Command keepalive shows per-socket TCP keepalive working on this machine.
//
// Run with no arguments, it dials a loopback listener with a sample Config,
// reads the options back from both the dialed and the accepted socket, and
// prints them next to the system defaults and the worst-case time each takes
// to notice a peer that has vanished. Flags choose another Config; an
// invalid one is reported with its validation error and exit status 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/keepalive-go/keepalive"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a failure of the command line, which exits with status 2.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) && !errors.Is(err, errUsage) {
			fmt.Fprintln(stderr, err)
		}
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := demo(c, stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (keepalive.Config, error) {
	// The sample: below every common middlebox idle timeout (AWS NLB 350 s),
	// and a dead peer noticed within two minutes.
	c := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}
	c = c.WithUserTimeout(keepalive.Config{})
	fs := flag.NewFlagSet("keepalive", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.DurationVar(&c.Idle, "idle", c.Idle, "idle time before the first probe (TCP_KEEPIDLE); 0 for the system default")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "time between probes (TCP_KEEPINTVL); 0 for the system default")
	fs.IntVar(&c.Count, "count", c.Count, "unanswered probes before the connection is dropped (TCP_KEEPCNT); 0 for the system default")
	fs.DurationVar(&c.UserTimeout, "user-timeout", c.UserTimeout, "longest time sent data may stay unacknowledged (TCP_USER_TIMEOUT); 0 for none")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: keepalive [flags]\n\nDials loopback with a keepalive Config and shows the values the kernel reports.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, errUsage // the flag package has printed the error and usage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return c, fmt.Errorf("keepalive: unexpected argument %q", fs.Arg(0))
	}
	return c, c.Validate()
}

func demo(c keepalive.Config, w io.Writer) error {
	sys, err := keepalive.SystemDefaults()
	if err != nil {
		return err
	}
	ln, err := keepalive.Listen("tcp", "127.0.0.1:0", c)
	if err != nil {
		return err
	}
	defer ln.Close()
	d := keepalive.Dialer{Config: c}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dialed, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer dialed.Close()
	accepted, err := ln.Accept()
	if err != nil {
		return err
	}
	defer accepted.Close()
	ds, err := keepalive.Get(dialed)
	if err != nil {
		return err
	}
	as, err := keepalive.Get(accepted)
	if err != nil {
		return err
	}

	fmt.Fprintf(w, "system defaults (sysctl net.ipv4.tcp_keepalive_*): idle %v, interval %v, count %d, no user timeout\n", sys.Idle, sys.Interval, sys.Count)
	fmt.Fprintf(w, "requested config: idle %v, interval %v, count %d, user timeout %v (0 = system default / none)\n\n", c.Idle, c.Interval, c.Count, c.UserTimeout)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "socket\tkeepalive\tidle\tinterval\tcount\tuser timeout\t")
	for _, s := range []struct {
		name string
		s    keepalive.Settings
	}{{"dialed " + dialed.LocalAddr().String(), ds}, {"accepted " + accepted.LocalAddr().String(), as}} {
		on := "off"
		if s.s.Enabled {
			on = "on"
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\t%v\t\n", s.name, on, s.s.Config.Idle, s.s.Config.Interval, s.s.Config.Count, s.s.Config.UserTimeout)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nworst case to notice a vanished peer on an idle connection:\n")
	fmt.Fprintf(w, "  with this config:     %v\n", c.DetectionTime(sys))
	fmt.Fprintf(w, "  with system defaults: %v\n", keepalive.Config{}.DetectionTime(sys))
	return nil
}
