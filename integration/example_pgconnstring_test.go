package integration_test

import (
	"context"
	"database/sql"
	"fmt"
	"log"

	"github.com/jackc/pgx/v5"
	"github.com/lib/pq"

	"github.com/keepalive-go/keepalive"
)

// pgx v5 with libpq's keepalive options in the connection string: the
// options become the Dialer's Config, the rest of the string goes to pgx.
func Example_pgxConnString() {
	ctx := context.Background()
	cfg, rest, err := keepalive.ParsePostgres("postgres://app@db.internal/app?keepalives_idle=30&keepalives_interval=10&keepalives_count=3&tcp_user_timeout=60000")
	if err != nil {
		log.Fatal(err)
	}
	connConfig, err := pgx.ParseConfig(rest)
	if err != nil {
		log.Fatal(err)
	}
	connConfig.DialFunc = (&keepalive.Dialer{Config: cfg}).DialContext
	conn, err := pgx.ConnectConfig(ctx, connConfig)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
}

// lib/pq with libpq's keepalive options in the connection string.
func Example_libpqConnString() {
	cfg, rest, err := keepalive.ParsePostgres("host=db.internal dbname=app user=app keepalives_idle=30 keepalives_interval=10 keepalives_count=3")
	if err != nil {
		log.Fatal(err)
	}
	connector, err := pq.NewConnector(rest)
	if err != nil {
		log.Fatal(err)
	}
	connector.Dialer(&keepalive.Dialer{Config: cfg})
	db := sql.OpenDB(connector)
	defer db.Close()
	fmt.Println(db.Ping())
}
