// Package integration proves the keepalive library against real clients and
// real servers. It has no API: its tests start PostgreSQL, MariaDB, Redis,
// nats-server, OpenSSH's sshd, RabbitMQ, etcd and memcached on loopback
// (and gRPC, HTTP, TLS, WebSocket and Kafka (franz-go's kfake) servers in
// process), connect through each client's own dialer hook, run a query or
// request, and read the options back from the very socket the client
// dialed, with keepalive.Get and with getsockopt. Its examples show the
// hook of each client.
//
// It is a module of its own so that the library's go.mod keeps only
// golang.org/x/sys and testify.
//
// # Hooks, and where a client changes a value
//
// A [github.com/keepalive-go/keepalive.Dialer] d plugs into:
//
//   - pgx v5: pgx.ConnConfig.DialFunc = d.DialContext (for a pool,
//     pgxpool.Config.ConnConfig.DialFunc). Without it pgx dials with a zero
//     net.Dialer: Go's 15 s idle, 15 s interval, 9 probes.
//   - lib/pq: pq.Connector.Dialer(d). lib/pq calls DialContext when the
//     dialer has one, as *keepalive.Dialer does, with connect_timeout as the
//     context's deadline; a dialer with only Dial and DialTimeout gets
//     DialTimeout(connect_timeout), or Dial without a connect_timeout.
//   - go-sql-driver/mysql: Config.DialFunc = d.DialContext, or
//     mysql.RegisterDialContext(name, d.DialAddress) and the network name
//     in the DSN. The driver turns SO_KEEPALIVE on after dialing; the
//     values stay.
//   - go-redis v9: Options.Dialer = d.DialContext. With Dialer set,
//     go-redis ignores Options.TLSConfig and speaks plain text: for TLS the
//     Dialer must do the handshake itself.
//   - gRPC: grpc.WithContextDialer(d.DialAddress). gRPC writes its own
//     TCP_USER_TIMEOUT after the dialer returns: a client whose
//     grpc/keepalive.ClientParameters has Time set writes
//     ClientParameters.Timeout (20 s if zero) over Config.UserTimeout. A
//     server writes ServerParameters.Timeout (20 s unless set) on every
//     accepted connection, over a keepalive.ListenConfig's UserTimeout,
//     since its default Time is 2 hours. To keep one value, give gRPC's
//     Timeout the Config's UserTimeout, or leave Config.UserTimeout zero and
//     let gRPC own it.
//   - net/http: http.Transport.DialContext = d.DialContext (on a clone of
//     http.DefaultTransport); for HTTPS the Transport does the handshake
//     over that connection.
//   - crypto/tls: tls.Dialer.NetDialer (or tls.DialWithDialer) with the
//     *net.Dialer from d.ConfiguredNetDialer.
//   - nats.go: nats.SetCustomDialer(d). nats.go gives a custom dialer no
//     connect timeout: set one in d.NetDialer.
//   - franz-go: kgo.Dialer(d.DialContext).
//   - golang.org/x/crypto/ssh: ssh.Dial takes no dialer; dial with
//     d.DialContext and pass the connection to ssh.NewClientConn.
//   - gorilla/websocket: websocket.Dialer.NetDialContext = d.DialContext.
//   - coder/websocket: DialOptions.HTTPClient with a Transport whose
//     DialContext is d.DialContext.
//   - amqp091-go: amqp.Config.Dial = d.Dial. Its default dialer sets a
//     30 s deadline on the handshake; a custom one gets none.
//   - etcd clientv3: clientv3.Config.DialOptions with
//     grpc.WithContextDialer(d.DialAddress). With DialKeepAliveTime set,
//     gRPC writes DialKeepAliveTimeout as TCP_USER_TIMEOUT, as for gRPC.
//   - gomemcache: memcache.Client.DialContext = d.DialContext.
//   - net/http's Server and gRPC servers: serve on keepalive.Listen or
//     a keepalive.ListenConfig's listener; accepted connections inherit
//     the Config.
//
// # When keepalive declares the peer dead
//
// The dead-peer tests cut a client's flow while it waits on the server and
// record what the application sees, within the Config's bound: lib/pq,
// net/http, gRPC (codes.Unavailable), x/crypto/ssh (the client's Wait),
// coder/websocket and nats.go's disconnect handler return an error that
// says "connection timed out", most with ETIMEDOUT in the chain; pgx
// returns a bare io.ErrUnexpectedEOF and go-redis (with MaxRetries -1) a
// bare io.EOF, because each takes ETIMEDOUT for an expired deadline of its
// own and reads again; go-sql-driver/mysql returns mysql.ErrInvalidConn;
// gorilla/websocket and amqp091-go keep only the text. go-redis (by
// default), nats.go, franz-go and etcd clientv3 dial again by themselves
// and the waiting call carries on.
//
// For a connection idle in a pool, the next call of pgx (a single
// connection) and gomemcache fails with ETIMEDOUT; pgxpool, database/sql
// with lib/pq or go-sql-driver/mysql, go-redis and net/http dial again and
// the application sees nothing.
//
// # libpq connection strings and replication
//
// The connection-string tests run libpq's keepalive keys through
// keepalive.ParsePostgres into pgx and lib/pq, and compare ParsePostgres
// with the installed libpq itself (internal/libpq, with cgo). Package
// replicate streams PostgreSQL logical replication (pglogrepl over pgconn)
// and the MariaDB binary log (go-mysql's BinlogSyncer) through the
// library's Dialer and resumes after the last transaction handled; its
// tests put the server behind the lab's forgetting firewall and count every
// row, and run two streams on one slot (or MariaDB server ID) to prove that
// the second waits instead of ending the first.
//
// # Running the tests
//
// The tests need the Debian packages postgresql, mariadb-server,
// redis-server, nats-server, openssh-server, rabbitmq-server, etcd-server
// and memcached, and the firewall test needs root, iproute2 and nftables.
// A test whose server cannot run here is skipped with the reason, unless
// the environment variable CI is set: then it fails.
package integration
