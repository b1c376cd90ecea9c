// Command replicate streams the changes of a PostgreSQL or MariaDB server,
// one JSON line per committed transaction on standard output, for as long
// as it runs, through a keepalive.Dialer: the stream survives a firewall
// that forgets idle flows, notices within the keepalive Config's detection
// time when the flow has been dropped, reconnects and resumes after the
// last transaction it wrote.
//
// Usage:
//
//	replicate postgres [flags] CONNSTRING   stream a logical replication slot (pgoutput)
//	replicate mariadb [flags]               stream the binary log as a replica
//
// CONNSTRING is a libpq connection string, URI or keyword/value, whose
// keepalive options (keepalives, keepalives_idle, keepalives_interval,
// keepalives_count, tcp_user_timeout) set the Config, as they would for
// libpq. -keepalive, in the text form of keepalive.ParseConfig, replaces
// them; without either the Config is defaultConfig.
//
// One consumer streams a PostgreSQL slot, or a MariaDB server_id, at a
// time. A stream ends what holds it only when that is its own earlier,
// dead connection (or, for MariaDB, a stream of this command whose process
// on this host has exited); any other holder is named on standard error
// and waited for, so a second instance started by mistake is a standby
// and not a rival. -take-over ends the holder when the stream starts.
//
// Each line on standard output is a transaction: {"Commit":...,"End":...,
// "Time":...,"Changes":[{"Op":"insert","Table":"public.t","Row":{...}}]}.
// Connections, losses and retries are logged on standard error.
//
// The exit status is 0 when stopped by SIGINT or SIGTERM, 1 when the stream
// fails for good (writing its output failed), and 2 for a bad command line.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/integration/replicate"
)

// Exit statuses.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// defaultConfig is the Config when neither the connection string nor
// -keepalive gives one: probes from 30 s idle, below every common
// middlebox's idle timeout (AWS NLB 350 s, Azure 4 min), and a dead flow
// noticed within a minute, with data in flight or not.
var defaultConfig = keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 3, UserTimeout: 60 * time.Second}

// commands maps each subcommand to its function.
var commands = map[string]func(ctx context.Context, args []string, stdout io.Writer, logger *log.Logger) int{
	"postgres": postgresCmd,
	"mariadb":  mariadbCmd,
}

const usage = `usage: replicate postgres [flags] CONNSTRING   stream a logical replication slot (pgoutput)
       replicate mariadb [flags]               stream the binary log as a replica

Run "replicate COMMAND -h" for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	logger := log.New(stderr, "replicate: ", log.LstdFlags|log.Lmicroseconds)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "replicate: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	return cmd(ctx, args[1:], stdout, logger)
}

// parseFlags parses args with fs, printing the error or help on stderr.
// It returns the exit status to end with, or -1 to go on.
func parseFlags(fs *flag.FlagSet, args []string, logger *log.Logger) int {
	fs.SetOutput(logger.Writer())
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	return -1
}

// keepaliveFlag returns the -keepalive flag of fs.
func keepaliveFlag(fs *flag.FlagSet) *keepalive.Config {
	c := new(keepalive.Config)
	fs.TextVar(c, "keepalive", defaultConfig, "TCP keepalive `config` (idle=,interval=,count=,user-timeout=)")
	return c
}

// isSet reports whether the flag name was given on the command line.
func isSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// output writes each transaction as a JSON line.
func output(w io.Writer) func(replicate.Txn) error {
	enc := json.NewEncoder(w)
	return func(t replicate.Txn) error { return enc.Encode(t) }
}

// logEvent logs a stream's events.
func logEvent(logger *log.Logger) func(replicate.Event) {
	return func(e replicate.Event) {
		switch e.Kind {
		case replicate.Connected:
			logger.Printf("connected from %v, streaming from %v", e.Local, e.Position)
		case replicate.Lost, replicate.ConnectFailed:
			logger.Printf("%v: %v; again in %v", e.Kind, e.Err, e.Delay)
		case replicate.TookOver:
			logger.Printf("ended %v, which held the stream and is dead or was asked to be taken over", e.Holder)
		case replicate.Busy:
			logger.Printf("the stream is held by %v, which may be alive: waiting until it is free, looking every %v (-take-over ends it)", e.Holder, e.Delay)
		}
	}
}

// exit returns the exit status for Run's error.
func exit(ctx context.Context, err error, logger *log.Logger) int {
	if ctx.Err() != nil {
		return exitOK
	}
	logger.Print(err)
	return exitFail
}
