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
		io.WriteString(w, "usage: replicate mariadb [flags]\n\nStream a MariaDB binary log (log_bin, binlog_format=ROW) as a replica.\nThe password is read from the environment variable MARIADB_PASSWORD.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	m := &replicate.MariaDB{Password: os.Getenv("MARIADB_PASSWORD")}
	fs.StringVar(&m.Addr, "addr", "127.0.0.1:3306", "server `host:port`")
	fs.StringVar(&m.User, "user", "root", "user `name`, with REPLICATION SLAVE and BINLOG MONITOR")
	serverID := fs.Uint("server-id", 4242, "this replica's server_id, unique among the server's replicas")
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
