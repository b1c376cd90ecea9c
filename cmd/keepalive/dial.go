package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/keepalive-go/keepalive"
)

var dialCommand = &command{
	name:    "dial",
	args:    "[flags] ADDR",
	summary: "connect to ADDR and show the values in force",
	help: `Connects to ADDR (host:port) with a Config, prints the values the kernel
reports for the socket, read back with getsockopt, and the worst-case time
to notice a vanished peer.

With -watch it then holds the connection idle, sending nothing, and reports
when and how it ends: the kernel declaring the peer dead (ETIMEDOUT) after
its keepalive probes go unanswered, or the peer closing (FIN) or resetting
(RST) it. On a terminal it shows how long the connection has been silent.
Interrupt to stop watching. A connection the peer closes, or a watch
interrupted, ends with status 0; one that times out or is reset with 1.

` + configHelp,
	examples: []example{
		{"keepalive dial localhost:5432", "connect with the default Config, " + withDefaults(defaults) + ",\nand show the values in force"},
		{"keepalive dial -config idle=30s,count=4 -watch localhost:5432", "idle 30s and 4 probes, the rest as by default; then hold the\nconnection idle and report how it ends"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		cf := addConfigFlags(fs)
		timeout := durationFlag(fs, "timeout", 10*time.Second, "10s", "no limit", "give up connecting after this `duration`")
		watch := boolFlag(fs, "watch", "hold the connection idle and report when and how it ends")
		return func(ctx context.Context, e *env, args []string) error {
			addr, err := oneArg(args, "ADDR")
			if err != nil {
				return err
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return usagef("ADDR %q is not host:port: %v", addr, err)
			}
			c, err := cf.config()
			if err != nil {
				return err
			}
			return dial(ctx, e, addr, c, *timeout, *watch)
		}
	},
}

func dial(ctx context.Context, e *env, addr string, c keepalive.Config, timeout time.Duration, watch bool) error {
	d := keepalive.Dialer{Config: c}
	dctx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	start := time.Now()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	connected := time.Now()
	fmt.Fprintf(e.stdout, "connected to %v from %v in %v\n", conn.RemoteAddr(), conn.LocalAddr(), connected.Sub(start).Round(time.Microsecond))
	sys, sysErr := keepalive.SystemDefaults()
	printRequest(e.stdout, c, sys, sysErr)
	inForce, err := keepalive.Get(conn)
	on := !inForce.Off
	switch {
	case errors.Is(err, errors.ErrUnsupported):
		// The options are set, but cannot be read back here.
		printLine(e.stdout, "in force", "not readable here: "+message(err))
		inForce, on = c, !c.Off
	case err != nil:
		return fmt.Errorf("reading the options back: %w", err)
	default:
		printLine(e.stdout, "in force", fmt.Sprintf("keepalive %s, %s (read back with getsockopt)", onOff(on), describe(inForce, sys)))
	}
	fmt.Fprintln(e.stdout)
	printBounds(e.stdout, inForce, on, sys, sysErr)
	if !watch {
		return nil
	}
	return watchConn(ctx, e, conn, connected, inForce, on, sys)
}

// watchConn reads conn until it ends and reports how, with the silence
// counted from since or from the last data received.
func watchConn(ctx context.Context, e *env, conn net.Conn, since time.Time, c keepalive.Config, on bool, sys keepalive.Config) error {
	bound, err := c.WithDefaults(sys).DetectionTime()
	switch {
	case !on:
		bound = 0
		fmt.Fprintln(e.stdout, "\nwatching: sending nothing; keepalive is off, so a vanished peer is never noticed")
	case err == nil:
		fmt.Fprintf(e.stdout, "\nwatching: sending nothing; a vanished peer should be declared dead within %v of silence\n", bound)
	default:
		bound = 0 // not known: the system defaults cannot be read
		fmt.Fprintln(e.stdout, "\nwatching: sending nothing")
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	last := since // when the last data was received
	silent := func() string {
		s := fmt.Sprintf("silent for %v", time.Since(last).Round(time.Second))
		if bound != 0 {
			s += fmt.Sprintf(" (a vanished peer is declared dead within %v)", bound)
		}
		return s
	}
	endProgress := e.showProgress(time.Second, silent)
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		now := time.Now()
		if n > 0 {
			endProgress()
			fmt.Fprintf(e.stdout, "received %d bytes after %v of silence; the connection is not idle, silence counts from now\n", n, now.Sub(last).Round(time.Millisecond))
			last = now
			endProgress = e.showProgress(time.Second, silent)
		}
		if err == nil {
			continue
		}
		endProgress()
		silence := now.Sub(last).Round(time.Millisecond)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(e.stdout, "stopped after %v of silence; the connection was still open\n", silence)
			return nil
		case errors.Is(err, io.EOF):
			fmt.Fprintf(e.stdout, "after %v of silence: the peer closed the connection (FIN)\n", silence)
			return nil
		case errors.Is(err, errTimedOut):
			fmt.Fprintf(e.stdout, "after %v of silence: the kernel declared the peer dead (ETIMEDOUT): its keepalive probes went unanswered\n", silence)
		case errors.Is(err, errReset):
			fmt.Fprintf(e.stdout, "after %v of silence: the peer reset the connection (RST, ECONNRESET)\n", silence)
		default:
			fmt.Fprintf(e.stdout, "after %v of silence: the connection failed\n", silence)
		}
		return err
	}
}
