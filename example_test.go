package keepalive_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"time"

	"github.com/keepalive-go/keepalive"
)

func ExampleConfig() {
	// Notice a vanished peer within two minutes instead of over two hours.
	c := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}

	// Every field is set: nothing depends on this machine's defaults.
	dt, err := c.DetectionTime()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("this Config:", dt)

	// Linux's usual defaults, for comparison; keepalive.SystemDefaults
	// reads this machine's, which DetectionTime uses for zero fields.
	sys := keepalive.Config{Idle: 2 * time.Hour, Interval: 75 * time.Second, Count: 9}
	dt, err = sys.DetectionTime()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("system defaults:", dt)

	// Bound unacknowledged data by the same time.
	c, err = c.WithUserTimeout()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("UserTimeout:", c.UserTimeout)
	// Output:
	// this Config: 1m50s
	// system defaults: 2h11m15s
	// UserTimeout: 1m50s
}

func ExampleConfig_KeepAliveConfig() {
	// Zero fields become -1: leave the system's value.
	k := keepalive.Config{Idle: 30 * time.Second, Count: 4}.KeepAliveConfig()
	fmt.Println(k.Enable, k.Idle, k.Interval, k.Count)
	// Output:
	// true 30s -1ns 4
}

func ExampleDialer() {
	d := &keepalive.Dialer{
		NetDialer: &net.Dialer{Timeout: 10 * time.Second},
		Config:    keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5},
	}
	conn, err := d.Dial("tcp", "db.example.com:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// The values in force, read back from the kernel.
	c, err := keepalive.Get(conn)
	if err != nil {
		log.Fatal(err)
	}
	dt, err := c.DetectionTime()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c, "notices a vanished peer within", dt)
}

func ExampleDialer_DialContext() {
	d := &keepalive.Dialer{
		NetDialer: &net.Dialer{Timeout: 30 * time.Second},
		Config:    keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5},
	}

	// net/http
	client := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	resp, err := client.Get("https://example.com/")
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()

	// The same method is the dial hook of database clients:
	//
	//	pgx:      cfg, _ := pgx.ParseConfig(dsn); cfg.DialFunc = d.DialContext (pgconn.Config.DialFunc)
	//	go-redis: redis.NewClient(&redis.Options{Addr: addr, Dialer: d.DialContext})
}

func ExampleDialer_DialTimeout() {
	d := &keepalive.Dialer{Config: keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}}
	conn, err := d.DialTimeout("tcp", "db.example.com:5432", 5*time.Second)
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// Dial and DialTimeout make a *keepalive.Dialer a lib/pq Dialer:
	//
	//	connector, err := pq.NewConnector(dsn)
	//	connector.Dialer(d)
	//	db := sql.OpenDB(connector)
}

func ExampleDialer_DialAddress() {
	d := &keepalive.Dialer{Config: keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}}

	// The address-only form some clients take as their dialer.
	var dial func(ctx context.Context, addr string) (net.Conn, error) = d.DialAddress
	conn, err := dial(context.Background(), "db.example.com:3306")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// gRPC:  grpc.NewClient(target, grpc.WithContextDialer(d.DialAddress))
	// MySQL: mysql.RegisterDialContext("tcp", d.DialAddress)
}

func ExampleDialer_ConfiguredNetDialer() {
	d := &keepalive.Dialer{Config: keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}}
	nd, err := d.ConfiguredNetDialer()
	if err != nil {
		log.Fatal(err)
	}

	// crypto/tls takes only a *net.Dialer.
	td := &tls.Dialer{NetDialer: nd, Config: &tls.Config{ServerName: "example.com"}}
	conn, err := td.DialContext(context.Background(), "tcp", "example.com:443")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	conn2, err := tls.DialWithDialer(nd, "tcp", "example.com:443", nil)
	if err != nil {
		log.Fatal(err)
	}
	defer conn2.Close()
}

func ExampleListen() {
	// Every accepted connection carries the Config.
	ln, err := keepalive.Listen("tcp", ":8080", keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(http.Serve(ln, nil))
}

func ExampleListenConfig() {
	lc := &keepalive.ListenConfig{
		// The base listen config's own settings and hooks are kept; its
		// KeepAlive fields give way to Config.
		NetListenConfig: &net.ListenConfig{},
		Config: keepalive.Config{
			Idle:        60 * time.Second,
			Interval:    10 * time.Second,
			Count:       5,
			UserTimeout: 110 * time.Second,
		},
	}
	ln, err := lc.Listen(context.Background(), "tcp", ":8080")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.Serve(ln))
}

func ExampleSet() {
	// A connection made elsewhere, here by the standard library, which
	// set its own 15s keepalive.
	conn, err := net.Dial("tcp", "db.example.com:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// Set applies the whole Config, or leaves the socket as it was.
	if err := keepalive.Set(conn, keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}); err != nil {
		log.Fatal(err)
	}
	c, err := keepalive.Get(conn)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c) // idle=60s,interval=10s,count=5
}

func ExampleDisable() {
	conn, err := net.Dial("tcp", "db.example.com:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	if err := keepalive.Disable(conn); err != nil {
		log.Fatal(err)
	}
}

func ExampleConfig_Control() {
	c := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}
	if err := c.Validate(); err != nil {
		log.Fatal(err)
	}
	// KeepAlive -1 stops the standard library from overwriting the
	// values with its own after connect.
	nd := &net.Dialer{KeepAlive: -1, Control: c.Control}
	conn, err := nd.Dial("tcp", "db.example.com:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

func ExampleSystemDefaults() {
	sys, err := keepalive.SystemDefaults()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("Idle", sys.Idle, "Interval", sys.Interval, "Count", sys.Count)
	dt, err := sys.DetectionTime()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("a dead peer is noticed after", dt)
}

func ExampleGet() {
	conn, err := net.Dial("tcp", "db.example.com:5432")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()

	// Get reports the values in force, the system's where the socket set
	// none; the standard library's dial set its own 15s/15s/9.
	c, err := keepalive.Get(conn)
	if err != nil {
		log.Fatal(err)
	}
	if c.Off {
		fmt.Println("keepalive is off: a vanished peer is never noticed while idle")
		return
	}
	dt, err := c.DetectionTime()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%v: a vanished peer is noticed within %v\n", c, dt)
}

func ExamplePlatform() {
	p := keepalive.Platform()
	c := keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}
	// A driver that wants a user timeout only where the platform has one.
	if p.UserTimeout.Settable {
		c.UserTimeout = 110 * time.Second
	}
	fmt.Printf("user timeout via %s: %v; values read back: %v\n", p.UserTimeout.Option, p.UserTimeout.Settable, p.Idle.Readable)
	d := &keepalive.Dialer{Config: c}
	_ = d
}

// A Config can turn keepalive off: a connection whose idleness is the
// protocol's business, with a user timeout still bounding unacknowledged
// data.
func ExampleConfig_off() {
	c := keepalive.Config{Off: true, UserTimeout: 30 * time.Second}
	fmt.Println(c)
	dt, err := c.DetectionTime()
	fmt.Println(dt == math.MaxInt64, err)
	// Output:
	// off,user-timeout=30s
	// true <nil>
}
