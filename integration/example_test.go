package integration_test

import (
	"context"
	"crypto/tls"
	"database/sql"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/lib/pq"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpckeepalive "google.golang.org/grpc/keepalive"

	"github.com/keepalive-go/keepalive"
)

// exampleConfig is a Config for a path whose middleboxes forget idle flows
// after 350 s (AWS NLB): probes from 60 s idle, dead after 110 s.
var exampleConfig = keepalive.Config{
	Idle:        60 * time.Second,
	Interval:    10 * time.Second,
	Count:       5,
	UserTimeout: 110 * time.Second,
}

// pgx v5: the connection's DialFunc.
func Example_pgx() {
	ctx := context.Background()
	cfg, err := pgx.ParseConfig("postgres://app@db.internal:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	d := &keepalive.Dialer{Config: exampleConfig}
	cfg.DialFunc = d.DialContext // for pgxpool: poolCfg.ConnConfig.DialFunc
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	s, err := keepalive.Get(conn.PgConn().Conn())
	fmt.Println(s, err)
}

// lib/pq: a Connector with the Dialer. lib/pq calls its DialContext, with
// connect_timeout as the deadline.
func Example_libpq() {
	connector, err := pq.NewConnector("host=db.internal dbname=app user=app connect_timeout=5")
	if err != nil {
		log.Fatal(err)
	}
	connector.Dialer(&keepalive.Dialer{Config: exampleConfig})
	db := sql.OpenDB(connector)
	defer db.Close()
	fmt.Println(db.Ping())
}

// go-sql-driver/mysql: Config.DialFunc.
func Example_mysql() {
	d := &keepalive.Dialer{Config: exampleConfig}
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "app", "tcp", "db.internal:3306", "app"
	cfg.DialFunc = d.DialContext
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		log.Fatal(err)
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	fmt.Println(db.Ping())
}

// go-sql-driver/mysql: a network name registered for the DSN.
func Example_mysqlRegisterDialContext() {
	d := &keepalive.Dialer{Config: exampleConfig}
	mysql.RegisterDialContext("keepalive", d.DialAddress)
	db, err := sql.Open("mysql", "app@keepalive(db.internal:3306)/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	fmt.Println(db.Ping())
}

// go-redis v9: Options.Dialer.
func Example_goRedis() {
	d := &keepalive.Dialer{Config: exampleConfig}
	rdb := redis.NewClient(&redis.Options{Addr: "cache.internal:6379", Dialer: d.DialContext})
	defer rdb.Close()
	fmt.Println(rdb.Ping(context.Background()).Err())
}

// go-redis v9 with TLS: with Options.Dialer set, go-redis ignores
// Options.TLSConfig, so the Dialer does the handshake.
func Example_goRedisTLS() {
	d := &keepalive.Dialer{Config: exampleConfig}
	tlsConfig := &tls.Config{ServerName: "cache.internal"}
	rdb := redis.NewClient(&redis.Options{
		Addr: "cache.internal:6380",
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(conn, tlsConfig)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		},
	})
	defer rdb.Close()
	fmt.Println(rdb.Ping(context.Background()).Err())
}

// gRPC: WithContextDialer. gRPC's own keepalive parameters write
// TCP_USER_TIMEOUT after the dial; giving them the Config's UserTimeout
// keeps one value.
func Example_grpc() {
	d := &keepalive.Dialer{Config: exampleConfig}
	cc, err := grpc.NewClient("dns:///api.internal:50051",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(d.DialAddress),
		grpc.WithKeepaliveParams(grpckeepalive.ClientParameters{
			Time:    time.Minute,
			Timeout: exampleConfig.UserTimeout,
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
}

// net/http: Transport.DialContext, for HTTP and HTTPS alike. A clone of the
// default transport keeps its proxy, timeouts and HTTP/2.
func Example_http() {
	d := &keepalive.Dialer{Config: exampleConfig}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	client := &http.Client{Transport: tr}
	resp, err := client.Get("https://api.internal/health")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
}

// crypto/tls: the net.Dialer from ConfiguredNetDialer.
func Example_tls() {
	d := &keepalive.Dialer{Config: exampleConfig}
	nd, err := d.ConfiguredNetDialer()
	if err != nil {
		log.Fatal(err)
	}
	td := &tls.Dialer{NetDialer: nd, Config: &tls.Config{}}
	conn, err := td.DialContext(context.Background(), "tcp", "api.internal:443")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	s, err := keepalive.Get(conn)
	fmt.Println(s, err)
}
