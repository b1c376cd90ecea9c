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

	"github.com/bradfitz/gomemcache/memcache"
	coder "github.com/coder/websocket"
	"github.com/go-sql-driver/mysql"
	"github.com/gorilla/websocket"
	"github.com/jackc/pgx/v5"
	"github.com/lib/pq"
	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/ssh"
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

// nats.go: a custom dialer. nats.go gives a custom dialer no connect
// timeout of its own (its Timeout option applies to its own dialer): set
// one on the NetDialer. nats.go reconnects by itself when keepalive closes
// the connection; the disconnect handler gets the error.
func Example_nats() {
	d := &keepalive.Dialer{NetDialer: &net.Dialer{Timeout: 2 * time.Second}, Config: exampleConfig}
	nc, err := nats.Connect("nats://nats.internal:4222", nats.SetCustomDialer(d),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Printf("nats: disconnected: %v", err) }))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
}

// franz-go (Kafka): kgo.Dialer.
func Example_kafka() {
	d := &keepalive.Dialer{Config: exampleConfig}
	cl, err := kgo.NewClient(kgo.SeedBrokers("kafka.internal:9092"), kgo.Dialer(d.DialContext))
	if err != nil {
		log.Fatal(err)
	}
	defer cl.Close()
}

// golang.org/x/crypto/ssh: ssh.Dial takes no dialer, so dial through the
// Dialer and start the SSH connection over it.
func Example_ssh() {
	d := &keepalive.Dialer{Config: exampleConfig}
	cfg := &ssh.ClientConfig{User: "app", HostKeyCallback: ssh.InsecureIgnoreHostKey()} // use a real host key check
	conn, err := d.DialContext(context.Background(), "tcp", "bastion.internal:22")
	if err != nil {
		log.Fatal(err)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, "bastion.internal:22", cfg)
	if err != nil {
		conn.Close()
		log.Fatal(err)
	}
	client := ssh.NewClient(c, chans, reqs)
	defer client.Close()
}

// gorilla/websocket: Dialer.NetDialContext.
func Example_gorillaWebSocket() {
	d := &keepalive.Dialer{Config: exampleConfig}
	wd := websocket.Dialer{NetDialContext: d.DialContext}
	c, _, err := wd.Dial("wss://events.internal/stream", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// coder/websocket: the HTTP client's Transport.DialContext.
func Example_coderWebSocket() {
	d := &keepalive.Dialer{Config: exampleConfig}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = d.DialContext
	c, _, err := coder.Dial(context.Background(), "wss://events.internal/stream",
		&coder.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.CloseNow()
}

// amqp091-go (RabbitMQ): Config.Dial. The library's default dialer sets a
// 30 s deadline for the handshake; a Dialer with a NetDialer Timeout
// bounds the connect only.
func Example_rabbitmq() {
	d := &keepalive.Dialer{NetDialer: &net.Dialer{Timeout: 30 * time.Second}, Config: exampleConfig}
	conn, err := amqp.DialConfig("amqp://app:secret@mq.internal:5672/", amqp.Config{Dial: d.Dial})
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// etcd clientv3: a gRPC context dialer among the DialOptions. clientv3
// sets no gRPC keepalive unless DialKeepAliveTime is set; when it is,
// DialKeepAliveTimeout becomes the socket's TCP_USER_TIMEOUT: give it the
// Config's UserTimeout.
func Example_etcd() {
	d := &keepalive.Dialer{Config: exampleConfig}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"etcd.internal:2379"},
		DialTimeout: 5 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(d.DialAddress)},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

// gomemcache: Client.DialContext.
func Example_memcache() {
	d := &keepalive.Dialer{Config: exampleConfig}
	mc := memcache.New("cache.internal:11211")
	mc.DialContext = d.DialContext
	fmt.Println(mc.Ping())
}

// net/http's Server on a listener whose accepted connections carry the
// Config.
func Example_httpServer() {
	ln, err := keepalive.Listen("tcp", ":8080", exampleConfig)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, http.NotFoundHandler()))
}

// A gRPC server on a listener whose accepted connections carry the Config.
// gRPC writes ServerParameters.Timeout (20 s unless set) as every accepted
// connection's TCP_USER_TIMEOUT; give it the Config's UserTimeout.
func Example_grpcServer() {
	lc := keepalive.ListenConfig{Config: exampleConfig}
	ln, err := lc.Listen(context.Background(), "tcp", ":50051")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpc.KeepaliveParams(grpckeepalive.ServerParameters{Timeout: exampleConfig.UserTimeout}))
	log.Fatal(srv.Serve(ln))
}
