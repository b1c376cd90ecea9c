// Command keepalive shows, checks and chooses per-socket TCP keepalive
// settings.
//
// Usage:
//
//	keepalive [flags]                  show keepalive on a loopback connection
//	keepalive dial [flags] ADDR        connect to ADDR and show the values in force
//	keepalive sysctl [flags]           print the sysctl lines for a Config
//	keepalive suggest -idle-timeout D -detect D
//	                                   choose a Config for a path
//
// Run with no arguments, it dials a loopback listener with a sample Config,
// reads the options back from both the dialed and the accepted socket, and
// prints them next to the system defaults and the worst-case time each takes
// to notice a peer that has vanished.
//
// A Config is given as text, -config "idle=60s,interval=10s,count=5", or
// field by field with -idle, -interval, -count and -user-timeout, which
// override the fields of -config.
//
// dial connects to ADDR with the Config, prints the values the kernel
// reports for the socket and the worst-case time to notice a vanished peer.
// With -watch it then holds the connection idle, sending nothing, and
// reports when and how it ends: the kernel declaring the peer dead
// (ETIMEDOUT), or the peer closing or resetting it.
//
// sysctl prints the lines, as for /etc/sysctl.d/, that make a Config the
// machine-wide default. suggest prints the Config for a path whose
// middleboxes forget idle flows after -idle-timeout, when a vanished peer
// must be noticed within -detect, and why.
//
// The exit status is 0 on success, 2 for a bad command line or Config, and 1
// when a connection fails (with -watch: when it times out or is reset).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/keepalive-go/keepalive"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1 // a connection failed
	exitUsage = 2 // a bad command line or Config
)

// sample is the Config the demo and dial use when none is given: below
// every common middlebox idle timeout (AWS NLB 350 s), and a dead peer
// noticed within two minutes.
var sample = keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}.WithUserTimeout(keepalive.Config{})

const usage = `usage: keepalive [flags]                  show keepalive on a loopback connection
       keepalive dial [flags] ADDR        connect to ADDR and show the values in force
       keepalive sysctl [flags]           print the sysctl lines for a Config
       keepalive suggest -idle-timeout D -detect D
                                          choose a Config for a path
       keepalive audit [flags]            list this host's TCP connections and their keepalive
       keepalive apply -pid P -config C   set keepalive on a running process's connections

Run "keepalive COMMAND -h" for the flags of a command.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "dial":
			return dialCmd(ctx, args[1:], stdout, stderr)
		case "sysctl":
			return sysctlCmd(args[1:], stdout, stderr)
		case "suggest":
			return suggestCmd(args[1:], stdout, stderr)
		case "audit":
			return auditCmd(ctx, args[1:], stdout, stderr)
		case "apply":
			return applyCmd(ctx, args[1:], stdout, stderr)
		case "help":
			if len(args) > 1 {
				return run(ctx, []string{args[1], "-h"}, stdout, stderr)
			}
			return demoCmd(ctx, []string{"-h"}, stdout, stderr)
		}
		fmt.Fprintf(stderr, "keepalive: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return demoCmd(ctx, args, stdout, stderr)
}

// command is one subcommand's flag set and help.
type command struct {
	fs    *flag.FlagSet
	usage string // the first lines of the help, before the flags
}

func newCommand(name, usage string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed by parse
	fs.Usage = func() {}
	return &command{fs: fs, usage: usage}
}

func (c *command) printHelp(w io.Writer) {
	fmt.Fprint(w, c.usage)
	fmt.Fprintln(w, "\nFlags:")
	c.fs.SetOutput(w)
	c.fs.PrintDefaults()
	c.fs.SetOutput(io.Discard)
}

// parse parses args, flags and positional arguments in any order, and
// returns the positional ones. On -h it prints the help to stdout; on an
// error it prints the error and the help to stderr. done reports that the
// command must end with status code.
func (c *command) parse(args []string, stdout, stderr io.Writer) (pos []string, code int, done bool) {
	for {
		err := c.fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.printHelp(stdout)
			return nil, exitOK, true
		}
		if err != nil {
			return nil, c.usageError(stderr, err.Error()), true
		}
		args = c.fs.Args()
		if len(args) == 0 {
			return pos, 0, false
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// usageError prints msg and the help to stderr and returns exitUsage.
func (c *command) usageError(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "%s: %s\n\n", c.fs.Name(), msg)
	c.printHelp(stderr)
	return exitUsage
}

// configFlags are the flags that give a Config.
type configFlags struct {
	text                        keepalive.Config
	idle, interval, userTimeout time.Duration
	count                       int
}

func addConfigFlags(fs *flag.FlagSet, def keepalive.Config) *configFlags {
	f := &configFlags{}
	fs.TextVar(&f.text, "config", def, "the Config as `text`: idle=D,interval=D,count=N,user-timeout=D, each key optional")
	fs.DurationVar(&f.idle, "idle", def.Idle, "idle time before the first probe (TCP_KEEPIDLE); 0 for the system default; overrides -config")
	fs.DurationVar(&f.interval, "interval", def.Interval, "time between probes (TCP_KEEPINTVL); 0 for the system default; overrides -config")
	fs.IntVar(&f.count, "count", def.Count, "unanswered probes before the connection is dropped (TCP_KEEPCNT); 0 for the system default; overrides -config")
	fs.DurationVar(&f.userTimeout, "user-timeout", def.UserTimeout, "longest time sent data may stay unacknowledged (TCP_USER_TIMEOUT); 0 for none; overrides -config")
	return f
}

// config returns the Config of -config with the fields given by their own
// flags replaced, validated.
func (f *configFlags) config(fs *flag.FlagSet) (keepalive.Config, error) {
	c := f.text
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "idle":
			c.Idle = f.idle
		case "interval":
			c.Interval = f.interval
		case "count":
			c.Count = f.count
		case "user-timeout":
			c.UserTimeout = f.userTimeout
		}
	})
	return c, c.Validate()
}

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keepalive", usage+`
With no command, keepalive dials a listener on loopback with a Config, reads
the options back from both the dialed and the accepted socket, and prints
them next to the system defaults and the worst-case time to notice a
vanished peer. The default Config is `+sample.String()+`.
`)
	cf := addConfigFlags(cmd.fs, sample)
	pos, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return cmd.usageError(stderr, fmt.Sprintf("unknown command %q", pos[0]))
	}
	c, err := cf.config(cmd.fs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if err := demo(ctx, c, stdout); err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	return exitOK
}

func demo(ctx context.Context, c keepalive.Config, w io.Writer) error {
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
	ds, err := keepalive.Get(dialed)
	if err != nil {
		return err
	}
	as, err := keepalive.Get(accepted)
	if err != nil {
		return err
	}

	fmt.Fprintf(w, "system defaults (sysctl net.ipv4.tcp_keepalive_*): idle %v, interval %v, count %d, no user timeout\n", sys.Idle, sys.Interval, sys.Count)
	fmt.Fprintf(w, "requested config: idle %v, interval %v, count %d, user timeout %v (0 = system default / none)\n", c.Idle, c.Interval, c.Count, c.UserTimeout)
	fmt.Fprintf(w, "  as text: %q\n\n", c.String())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "socket\tkeepalive\tidle\tinterval\tcount\tuser timeout\t")
	for _, s := range []struct {
		name string
		s    keepalive.Settings
	}{{"dialed " + dialed.LocalAddr().String(), ds}, {"accepted " + accepted.LocalAddr().String(), as}} {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%v\t%d\t%v\t\n", s.name, onOff(s.s.Enabled), s.s.Config.Idle, s.s.Config.Interval, s.s.Config.Count, s.s.Config.UserTimeout)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nworst case to notice a vanished peer on an idle connection:\n")
	fmt.Fprintf(w, "  with this config:     %v\n", c.DetectionTime(sys))
	fmt.Fprintf(w, "  with system defaults: %v\n", keepalive.Config{}.DetectionTime(sys))
	fmt.Fprintf(w, "with data left unacknowledged, the connection is given up after:\n")
	fmt.Fprintf(w, "  with this config:     %s\n", unackedBound(c.UserTimeout))
	fmt.Fprintf(w, "  with system defaults: %s\n", unackedBound(0))
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// unackedBound describes how long data may stay unacknowledged before the
// connection is given up, for a user timeout ut (zero for none).
func unackedBound(ut time.Duration) string {
	if ut != 0 {
		return fmt.Sprintf("%v (the user timeout)", ut)
	}
	rt, err := keepalive.RetransmitTimeout()
	if err != nil {
		return "the system's retransmission limit (" + err.Error() + ")"
	}
	return fmt.Sprintf("at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)", rt)
}

// idleBound explains c.DetectionTime for c read back from a socket, in
// which every field but UserTimeout is set.
func idleBound(c keepalive.Config) string {
	dt := c.DetectionTime(keepalive.Config{})
	k := int64(0)
	if c.Interval > 0 {
		k = int64((dt - c.Idle) / c.Interval)
	}
	s := fmt.Sprintf("%v: idle %v + %s × interval %v", dt, c.Idle, probes(k), c.Interval)
	if c.UserTimeout != 0 {
		s += fmt.Sprintf(" (with the user timeout %v the kernel gives up at the first probe timer after it, whatever the count)", c.UserTimeout)
	}
	return s
}

const dialUsage = `usage: keepalive dial [flags] ADDR

Connects to ADDR (host:port) with a Config, prints the values the kernel
reports for the socket, read back with getsockopt, and the worst-case time
to notice a vanished peer. The default Config is %s.

With -watch it then holds the connection idle, sending nothing, and reports
when and how it ends: the kernel declaring the peer dead (ETIMEDOUT) after
its keepalive probes go unanswered, or the peer closing (FIN) or resetting
(RST) it. Interrupt to stop watching.

Exit status: 0 on success (with -watch: the peer closed the connection, or
watching was interrupted), 1 when the connection fails (with -watch: it
timed out or was reset), 2 for a bad command line or Config.
`

func dialCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keepalive dial", fmt.Sprintf(dialUsage, sample))
	cf := addConfigFlags(cmd.fs, sample)
	timeout := cmd.fs.Duration("timeout", 10*time.Second, "give up connecting after this long; 0 for no limit")
	watch := cmd.fs.Bool("watch", false, "hold the connection idle and report when and how it ends")
	pos, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	switch {
	case len(pos) == 0:
		return cmd.usageError(stderr, "missing ADDR")
	case len(pos) > 1:
		return cmd.usageError(stderr, fmt.Sprintf("unexpected argument %q after ADDR", pos[1]))
	}
	addr := pos[0]
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return cmd.usageError(stderr, fmt.Sprintf("ADDR %q is not host:port: %v", addr, err))
	}
	c, err := cf.config(cmd.fs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}

	d := keepalive.Dialer{Config: c}
	dctx := ctx
	if *timeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	start := time.Now()
	conn, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		fmt.Fprintf(stderr, "keepalive: %v\n", err)
		return exitFail
	}
	defer conn.Close()
	connected := time.Now()
	fmt.Fprintf(stdout, "connected to %v from %v in %v\n", conn.RemoteAddr(), conn.LocalAddr(), connected.Sub(start).Round(time.Microsecond))
	s, err := keepalive.Get(conn)
	if errors.Is(err, errors.ErrUnsupported) {
		// The options are set, but cannot be read back here.
		fmt.Fprintf(stdout, "requested: %s\nin force: not readable here: %v\n", textOrZero(c), err)
		if !*watch {
			return exitOK
		}
		return watchConn(ctx, conn, connected, keepalive.Settings{Enabled: true, Config: c}, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintf(stderr, "keepalive: reading the options back: %v\n", err)
		return exitFail
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "requested:\t%s\n", textOrZero(c))
	fmt.Fprintf(tw, "in force:\tkeepalive %s, idle %v, interval %v, count %d, user timeout %v (read back with getsockopt)\n",
		onOff(s.Enabled), s.Config.Idle, s.Config.Interval, s.Config.Count, s.Config.UserTimeout)
	if sys, err := keepalive.SystemDefaults(); err == nil {
		fmt.Fprintf(tw, "system defaults:\tidle %v, interval %v, count %d (net.ipv4.tcp_keepalive_*)\n", sys.Idle, sys.Interval, sys.Count)
	}
	tw.Flush()
	fmt.Fprintln(stdout, "worst case to notice a vanished peer:")
	tw = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	if s.Enabled {
		fmt.Fprintf(tw, "  on an idle connection:\t%s\n", idleBound(s.Config))
	} else {
		fmt.Fprintf(tw, "  on an idle connection:\tnever: keepalive is off\n")
	}
	fmt.Fprintf(tw, "  with data unacknowledged:\t%s\n", unackedBound(s.Config.UserTimeout))
	tw.Flush()
	if !*watch {
		return exitOK
	}
	return watchConn(ctx, conn, connected, s, stdout, stderr)
}

// secs writes d in seconds, as sysctls and middlebox timeouts are given,
// when it is a whole number of them.
func secs(d time.Duration) string {
	if d%time.Second == 0 {
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}

// probes writes "1 unanswered probe", "2 unanswered probes".
func probes(n int64) string {
	if n == 1 {
		return "1 unanswered probe"
	}
	return fmt.Sprintf("%d unanswered probes", n)
}

func textOrZero(c keepalive.Config) string {
	if c == (keepalive.Config{}) {
		return "(the zero Config: system defaults)"
	}
	return c.String()
}

// watchConn reads conn until it ends and reports how, with the silence
// counted from since or from the last data received.
func watchConn(ctx context.Context, conn net.Conn, since time.Time, s keepalive.Settings, stdout, stderr io.Writer) int {
	switch {
	case s.Enabled && s.Config.Idle != 0 && s.Config.Interval != 0 && s.Config.Count != 0:
		fmt.Fprintf(stdout, "watching: sending nothing; a vanished peer should be declared dead within %v of silence\n", s.Config.DetectionTime(keepalive.Config{}))
	case s.Enabled:
		fmt.Fprintln(stdout, "watching: sending nothing")
	default:
		fmt.Fprintln(stdout, "watching: sending nothing; keepalive is off, so a vanished peer is never noticed")
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()
	last := since
	buf := make([]byte, 32<<10)
	for {
		n, err := conn.Read(buf)
		now := time.Now()
		if n > 0 {
			fmt.Fprintf(stdout, "received %d bytes after %v of silence; the connection is not idle, silence counts from now\n", n, now.Sub(last).Round(time.Millisecond))
			last = now
		}
		if err == nil {
			continue
		}
		silence := now.Sub(last).Round(time.Millisecond)
		switch {
		case ctx.Err() != nil:
			fmt.Fprintf(stdout, "stopped after %v of silence; the connection was still open\n", silence)
			return exitOK
		case errors.Is(err, io.EOF):
			fmt.Fprintf(stdout, "after %v of silence: the peer closed the connection (FIN)\n", silence)
			return exitOK
		case errors.Is(err, errTimedOut):
			fmt.Fprintf(stdout, "after %v of silence: the kernel declared the peer dead (ETIMEDOUT): its keepalive probes went unanswered\n", silence)
		case errors.Is(err, errReset):
			fmt.Fprintf(stdout, "after %v of silence: the peer reset the connection (RST, ECONNRESET)\n", silence)
		default:
			fmt.Fprintf(stdout, "after %v of silence: the connection failed\n", silence)
		}
		fmt.Fprintf(stderr, "keepalive: %v\n", err)
		return exitFail
	}
}

const sysctlUsage = `usage: keepalive sysctl [flags]

Prints the lines of a sysctl configuration file, as for /etc/sysctl.d/, that
make a Config the machine-wide default for sockets that turn keepalive on and
set no values of their own. UserTimeout has no sysctl: it is written as a
comment. The default Config is %s. Apply with:

    keepalive sysctl -config idle=60s,interval=10s,count=5 > /etc/sysctl.d/60-keepalive.conf
    sysctl --system
`

func sysctlCmd(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keepalive sysctl", fmt.Sprintf(sysctlUsage, sample))
	cf := addConfigFlags(cmd.fs, sample)
	pos, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return cmd.usageError(stderr, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	c, err := cf.config(cmd.fs)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	conf, err := c.SysctlConf()
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitFail
	}
	fmt.Fprint(stdout, conf)
	return exitOK
}

const suggestUsage = `usage: keepalive suggest -idle-timeout D -detect D

Prints a Config, as text that -config and keepalive.ParseConfig take, for a
path whose firewalls, NATs or load balancers forget a flow after
-idle-timeout of silence (AWS NLB 350s, Azure Load Balancer 4m, GCP Cloud
NAT 20m), when a vanished peer must be noticed within -detect; then why.
`

func suggestCmd(args []string, stdout, stderr io.Writer) int {
	cmd := newCommand("keepalive suggest", suggestUsage)
	idleTimeout := cmd.fs.Duration("idle-timeout", 0, "how long the path's middleboxes keep an idle flow (required)")
	detect := cmd.fs.Duration("detect", 0, "how soon a vanished peer must be noticed (required)")
	pos, code, done := cmd.parse(args, stdout, stderr)
	if done {
		return code
	}
	if len(pos) > 0 {
		return cmd.usageError(stderr, fmt.Sprintf("unexpected argument %q", pos[0]))
	}
	set := map[string]bool{}
	cmd.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range []string{"idle-timeout", "detect"} {
		if !set[name] {
			return cmd.usageError(stderr, "missing -"+name)
		}
	}
	c, err := keepalive.Suggest(*idleTimeout, *detect)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	dt := c.DetectionTime(keepalive.Config{})
	fmt.Fprintln(stdout, c)
	fmt.Fprintln(stdout, "\nwhy:")
	fmt.Fprintf(stdout, "  - a vanished peer is noticed within %s of silence (idle %s + %s × interval %s); the target was %s",
		secs(dt), secs(c.Idle), probes(int64(c.Count)), secs(c.Interval), secs(*detect))
	if dt < *detect {
		fmt.Fprintf(stdout, ": sooner, as the idle timeout bounds idle")
	}
	fmt.Fprintln(stdout)
	second := c.Idle + c.Interval
	fmt.Fprintf(stdout, "  - the path stays open: the first probe goes out after %s of silence, and if it is lost the next after %s, %s before the idle timeout %s\n",
		secs(c.Idle), secs(second), secs(*idleTimeout-second), secs(*idleTimeout))
	if c.Count > 1 {
		fmt.Fprintf(stdout, "  - %d probes: %d lost in a row do not close a healthy connection\n", c.Count, c.Count-1)
	} else {
		fmt.Fprintf(stdout, "  - 1 probe: a single lost probe closes a healthy connection; a longer -detect allows more\n")
	}
	if c.UserTimeout != 0 {
		fmt.Fprintf(stdout, "  - user-timeout %s: data left unacknowledged is given up on within the same time; without it, %s\n", secs(c.UserTimeout), unackedBound(0))
	}
	fmt.Fprintf(stdout, "\ncheck it against a server: keepalive dial -config %s HOST:PORT\n", c)
	return exitOK
}
