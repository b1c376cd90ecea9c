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
(RST) it. Interrupt to stop watching. Silence is the time since anything was
last received from the peer, data or the answer to a keepalive probe: the
kernel counts a vanished peer's detection from it, so a connection whose
probes were answered for a while is declared dead that long after its last
data. On Linux, which reports it (TCP_INFO), the end says how long the
connection was silent and how long it had received no data; elsewhere, only
the latter. On a terminal it shows both as they grow.

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

// watchConn reads conn until it ends and reports how, with how long it had
// received no data, counted from since or from the last data received,
// and, where the system says, how long it had received nothing at all, the
// silence the kernel counts a vanished peer's detection from.
func watchConn(ctx context.Context, e *env, conn net.Conn, since time.Time, c keepalive.Config, on bool, sys keepalive.Config) error {
	bound, err := c.WithDefaults(sys).DetectionTime()
	switch {
	case !on:
		bound = 0
		fmt.Fprintln(e.stdout, "\nwatching: sending nothing; keepalive is off, so a vanished peer is never noticed")
	case err == nil:
		fmt.Fprintf(e.stdout, "\nwatching: sending nothing; a vanished peer should be declared dead within %v of silence (%s)\n", bound, silenceMeans)
	default:
		bound = 0 // not known: the system defaults cannot be read
		fmt.Fprintln(e.stdout, "\nwatching: sending nothing")
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	last := since // when the last data was received
	status := func() string {
		s := fmt.Sprintf("no data for %v", time.Since(last).Round(time.Second))
		if d, ok := silence(conn); ok {
			s = fmt.Sprintf("silent for %v, %s", d.Round(time.Second), s)
		}
		if bound != 0 {
			s += fmt.Sprintf(" (a vanished peer is declared dead within %v of silence)", bound)
		}
		return s
	}
	endProgress := e.showProgress(time.Second, status)
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		now := time.Now()
		quiet, known := silence(conn) // read at once: it grows
		if n > 0 {
			endProgress()
			fmt.Fprintf(e.stdout, "received %d bytes after %v without data\n", n, now.Sub(last).Round(time.Millisecond))
			last = now
			endProgress = e.showProgress(time.Second, status)
		}
		if err == nil {
			continue
		}
		endProgress()
		noData := now.Sub(last).Round(time.Millisecond)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(e.stdout, "stopped after %v without data; the connection was still open\n", noData)
			return nil
		case errors.Is(err, io.EOF):
			fmt.Fprintf(e.stdout, "after %v without data: the peer closed the connection (FIN)\n", noData)
			return nil
		case errors.Is(err, errTimedOut) && known:
			fmt.Fprintf(e.stdout, "after %v of silence (%v without data): the kernel declared the peer dead (ETIMEDOUT): its keepalive probes went unanswered\n", quiet, noData)
		case errors.Is(err, errTimedOut):
			fmt.Fprintf(e.stdout, "after %v without data: the kernel declared the peer dead (ETIMEDOUT): its keepalive probes went unanswered\n", noData)
		case errors.Is(err, errReset):
			fmt.Fprintf(e.stdout, "after %v without data: the peer reset the connection (RST, ECONNRESET)\n", noData)
		default:
			fmt.Fprintf(e.stdout, "after %v without data: the connection failed\n", noData)
		}
		return err
	}
}

// silenceMeans says what silence is, in the words of -watch.
const silenceMeans = "silence: nothing received from the peer, not even the answer to a keepalive probe"
