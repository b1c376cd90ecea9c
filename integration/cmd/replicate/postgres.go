package main

import (
	"context"
	"flag"
	"io"
	"log"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/integration/replicate"
)

func postgresCmd(ctx context.Context, args []string, stdout io.Writer, logger *log.Logger) int {
	fs := flag.NewFlagSet("replicate postgres", flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		io.WriteString(w, postgresUsage)
		fs.PrintDefaults()
	}
	p := &replicate.Postgres{}
	fs.StringVar(&p.Slot, "slot", "keepalive_replicate", "replication slot `name`, created if it does not exist")
	fs.StringVar(&p.Publication, "publication", "", "publication `name` (required)")
	fs.DurationVar(&p.StatusInterval, "status-interval", 0, "longest time between standby status updates (default 10s)")
	fs.BoolVar(&p.TakeOver, "take-over", false, "at start, end the server process that holds the slot, whatever it streams to (default: wait for it)")
	ka := keepaliveFlag(fs)
	if code := parseFlags(fs, args, logger); code >= 0 {
		return code
	}
	if fs.NArg() != 1 || p.Publication == "" {
		fs.Usage()
		return exitUsage
	}
	cfg, rest, err := keepalive.ParsePostgres(fs.Arg(0))
	if err != nil {
		logger.Print(err)
		return exitUsage
	}
	if isSet(fs, "keepalive") || rest == fs.Arg(0) {
		cfg = *ka
	}
	if p.Config, err = pgconn.ParseConfig(rest); err != nil {
		logger.Print(err)
		return exitUsage
	}
	p.Config.DialFunc = (&keepalive.Dialer{Config: cfg}).DialContext
	p.Handle = output(stdout)
	p.OnEvent = logEvent(logger)
	logger.Printf("keepalive %v", cfg)
	return exit(ctx, p.Run(ctx), logger)
}

const postgresUsage = `usage: replicate postgres [flags] CONNSTRING

Stream a PostgreSQL logical replication slot (pgoutput, wal_level=logical).

One consumer streams a slot at a time. After its own connection died, the
stream ends the server process the server still keeps for it. A slot held by
any other process is left alone: the stream says who holds it and waits
until it is free (the server ends a holder whose client is gone after its
wal_sender_timeout, 60s by default), so a second instance is a standby.
-take-over ends the holder when the stream starts; a stream taken over waits.

Flags:
`
