package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"strconv"
	"strings"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/integration/replicate"
)

func mariadbCmd(ctx context.Context, args []string, stdout io.Writer, logger *log.Logger) int {
	fs := flag.NewFlagSet("replicate mariadb", flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		io.WriteString(w, mariadbUsage)
		fs.PrintDefaults()
	}
	m := &replicate.MariaDB{Password: os.Getenv("MARIADB_PASSWORD")}
	fs.StringVar(&m.Addr, "addr", "127.0.0.1:3306", "server `host:port`")
	fs.StringVar(&m.User, "user", "root", "user `name`, with REPLICATION SLAVE, REPLICATION MASTER ADMIN and BINLOG MONITOR")
	serverID := fs.Uint("server-id", 4242, "this replica's server_id, unique among the server's replicas")
	fs.BoolVar(&m.TakeOver, "take-over", false, "at start, stream even if another replica has -server-id, ending its stream (default: wait for it)")
	from := fs.String("from", "", "binary log `file:offset` to start at (default: the server's current end)")
	ka := keepaliveFlag(fs)
	if code := parseFlags(fs, args, logger); code >= 0 {
		return code
	}
	if fs.NArg() != 0 || *serverID == 0 || *serverID > 1<<32-1 {
		fs.Usage()
		return exitUsage
	}
	m.ServerID = uint32(*serverID)
	if *from != "" {
		file, off, ok := strings.Cut(*from, ":")
		n, err := strconv.ParseUint(off, 10, 32)
		if !ok || file == "" || err != nil {
			fmt.Fprintf(fs.Output(), "-from %q: want file:offset\n", *from)
			return exitUsage
		}
		m.From = replicate.Position{File: file, Pos: uint32(n)}
	}
	m.Dial = (&keepalive.Dialer{Config: *ka}).DialContext
	m.Handle = output(stdout)
	m.OnEvent = logEvent(logger)
	logger.Printf("keepalive %v", *ka)
	return exit(ctx, m.Run(ctx), logger)
}

const mariadbUsage = `usage: replicate mariadb [flags]

Stream a MariaDB binary log (log_bin, binlog_format=ROW) as a replica.
The password is read from the environment variable MARIADB_PASSWORD.

The server streams to one replica per server_id and ends the older stream
when another registers. So before streaming, the stream looks for a replica
registered with -server-id (SHOW REPLICA HOSTS: the user needs REPLICATION
MASTER ADMIN) and, unless it is its own earlier stream or a stream of this
command whose process on this host has exited, says who it is and waits
until it is gone: a second instance is a standby. -take-over streams at
start regardless, ending the other's stream; a stream taken over waits.

Flags:
`
