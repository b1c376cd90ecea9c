package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/keepalive-go/keepalive"
)

var demoCommand = &command{
	name:    "",
	args:    "[flags]",
	summary: "show keepalive on a loopback connection",
	help: `With no command, keepalive dials a listener on loopback with a Config, reads
the options back from both the dialed and the accepted socket, and prints
them next to the system defaults and the worst-case time to notice a
vanished peer.

` + configHelp,
	examples: []example{
		{"keepalive", "the default Config, " + withDefaults(defaults) + ", read back on both ends"},
		{"keepalive -config idle=30s,count=4", "idle 30s and 4 probes; interval 10s and the user timeout\n" + derivedUserTimeout + " as by default"},
		{"keepalive -user-timeout 0", "the default Config without a user timeout: after 5 unanswered probes"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		cf := addConfigFlags(fs)
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 0 {
				if lookup(args[0]) != nil {
					return usagef("the command %q must come first: keepalive %s [flags]", args[0], args[0])
				}
				return usagef("unknown command %q", args[0])
			}
			c, err := cf.config()
			if err != nil {
				return err
			}
			return demo(ctx, e.stdout, c)
		}
	},
}

// demo dials a loopback listener, both with c, and prints what each end
// reads back.
func demo(ctx context.Context, w io.Writer, c keepalive.Config) error {
	sys, sysErr := keepalive.SystemDefaults()
	ln, err := keepalive.Listen("tcp", "127.0.0.1:0", c)
	if err != nil {
		return err
	}
	defer ln.Close()
	d := keepalive.Dialer{Config: c}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
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
	dc, err := keepalive.Get(dialed)
	if err != nil {
		return fmt.Errorf("reading the dialed socket back: %w", err)
	}
	ac, err := keepalive.Get(accepted)
	if err != nil {
		return fmt.Errorf("reading the accepted socket back: %w", err)
	}

	printRequest(w, c, sys, sysErr)
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "socket\tkeepalive\tidle\tinterval\tcount\tuser timeout")
	for _, s := range []struct {
		name string
		c    keepalive.Config
		on   bool
	}{
		{"dialed " + dialed.LocalAddr().String(), dc, !dc.Off},
		{"accepted " + accepted.LocalAddr().String(), ac, !ac.Off},
	} {
		ut := "none"
		if s.c.UserTimeout != 0 {
			ut = s.c.UserTimeout.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\t%s\n", s.name, onOff(s.on), s.c.Idle, s.c.Interval, s.c.Count, ut)
	}
	tw.Flush()
	fmt.Fprintln(w)
	printBounds(w, dc, !dc.Off, sys, sysErr)
	return nil
}
