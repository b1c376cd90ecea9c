package integration_test

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	grpckeepalive "google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// TestGRPC dials an in-process health server through grpc.WithContextDialer
// and shows where gRPC writes its own TCP_USER_TIMEOUT: a client with
// keepalive.ClientParameters sets ClientParameters.Timeout on the socket
// after the dialer returns it, and a server sets ServerParameters.Timeout
// (20 s unless set) on every accepted socket.
func TestGRPC(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		client *grpckeepalive.ClientParameters
		server *grpckeepalive.ServerParameters
		// The user timeouts in force once the RPC is done.
		clientUserTimeout time.Duration
		serverUserTimeout time.Duration
	}{
		{
			name:              "no keepalive parameters",
			clientUserTimeout: clientConfig.UserTimeout,
			serverUserTimeout: 20 * time.Second, // gRPC's default ServerParameters.Timeout
		},
		{
			name:              "ClientParameters.Timeout overrides",
			client:            &grpckeepalive.ClientParameters{Time: 30 * time.Second, Timeout: 5 * time.Second},
			clientUserTimeout: 5 * time.Second,
			serverUserTimeout: 20 * time.Second,
		},
		{
			name:              "ClientParameters.Timeout equal to Config.UserTimeout",
			client:            &grpckeepalive.ClientParameters{Time: 30 * time.Second, Timeout: clientConfig.UserTimeout},
			clientUserTimeout: clientConfig.UserTimeout,
			serverUserTimeout: 20 * time.Second,
		},
		{
			name:              "ServerParameters.Timeout equal to the listener's UserTimeout",
			server:            &grpckeepalive.ServerParameters{Timeout: serverConfig.UserTimeout},
			clientUserTimeout: clientConfig.UserTimeout,
			serverUserTimeout: serverConfig.UserTimeout,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t)
			var sopts []grpc.ServerOption
			if tt.server != nil {
				sopts = append(sopts, grpc.KeepaliveParams(*tt.server))
			}
			srv := grpc.NewServer(sopts...)
			healthpb.RegisterHealthServer(srv, health.NewServer())
			go srv.Serve(ln)
			t.Cleanup(srv.Stop)

			rec := newRecorder(clientConfig)
			dopts := []grpc.DialOption{
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(rec.DialAddress),
			}
			if tt.client != nil {
				dopts = append(dopts, grpc.WithKeepaliveParams(*tt.client))
			}
			cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), dopts...)
			require.NoError(t, err)
			t.Cleanup(func() { cc.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			assert.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.Status)

			d := rec.only(t)
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned, before gRPC touched the socket")
			c := clientConfig
			c.UserTimeout = tt.clientUserTimeout
			assertSocket(t, d.Conn, c)

			s := serverConfig
			s.UserTimeout = tt.serverUserTimeout
			assertSocket(t, ln.from(t, d.Conn), s)
		})
	}
}

// deadPeerGRPC leaves a gRPC server stream (the health service's Watch)
// waiting on the server and cuts its flow.
func deadPeerGRPC(t *testing.T) {
	ln := listen(t)
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	rec := newRecorder(deadPeerConfig)
	cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(rec.DialAddress))
	require.NoError(t, err)
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	resp, err := stream.Recv()
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, resp.Status)
	d := rec.only(t)
	done := goCall(func() error {
		_, err := stream.Recv()
		return err
	})
	last := cutFlow(t, d.Conn)
	t.Parallel()

	o := await(t, done)
	require.Error(t, o.err)
	assert.Equal(t, codes.Unavailable, status.Code(o.err), "status code")
	assert.Contains(t, o.err.Error(), syscall.ETIMEDOUT.Error())
	noticed(t, "gRPC", o.err.Error(), last, o.at)
}

// deadPeerGRPCServer leaves a gRPC server's stream handler (the health
// service's Watch) waiting and makes the client vanish. The server's
// connection fails its read with ETIMEDOUT and the stream's context is
// canceled: the handler sees context.Canceled, and the health service's
// Watch returns codes.Canceled. gRPC's server writes its own
// TCP_USER_TIMEOUT on every accepted connection, ServerParameters.Timeout
// (20 s unless set), and with a user timeout set the kernel gives up on
// an idle connection's probes after that time rather than after Count
// probes: left at its default, the server notices after 20 s.
func deadPeerGRPCServer(t *testing.T) {
	tests := []struct {
		name   string
		params *grpckeepalive.ServerParameters
		bound  time.Duration
	}{
		{"ServerParameters.Timeout equal to the Config's UserTimeout",
			&grpckeepalive.ServerParameters{Timeout: deadPeerConfig.UserTimeout}, deadPeerBound},
		{"default ServerParameters",
			nil, detectionTime(withUserTimeout(deadPeerConfig, 20*time.Second))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lc := keepalive.ListenConfig{Config: deadPeerConfig}
			nl, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			require.NoError(t, err)
			ln := &acceptRecorder{Listener: nl}
			t.Cleanup(func() { nl.Close() })
			// What the handler saw: its stream's context, and the error
			// it returned.
			type seen struct {
				ctxErr, cause, handlerErr error
				at                        time.Time
			}
			done := make(chan seen, 1)
			opts := []grpc.ServerOption{grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
				err := handler(srv, ss)
				done <- seen{ss.Context().Err(), context.Cause(ss.Context()), err, time.Now()}
				return err
			})}
			if tt.params != nil {
				opts = append(opts, grpc.KeepaliveParams(*tt.params))
			}
			srv := grpc.NewServer(opts...)
			healthpb.RegisterHealthServer(srv, health.NewServer())
			go srv.Serve(ln)
			t.Cleanup(srv.Stop)
			dialed := make(chan net.Conn, 1)
			cc, err := grpc.NewClient("passthrough:///"+ln.Addr().String(),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					d := net.Dialer{KeepAlive: -1}
					c, err := d.DialContext(ctx, "tcp", addr)
					if err == nil {
						dialed <- c
					}
					return c, err
				}))
			require.NoError(t, err)
			t.Cleanup(func() { cc.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			stream, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{})
			require.NoError(t, err)
			_, err = stream.Recv()
			require.NoError(t, err)
			client := <-dialed
			server := ln.from(t, client)
			waitQuiet(t, tcpOf(t, client))
			last := vanish(t, client, server)
			t.Parallel()

			var s seen
			select {
			case s = <-done:
			case <-time.After(awaitTimeout):
				require.FailNow(t, "the handler is still waiting")
			}
			assert.Equal(t, context.Canceled, s.ctxErr, "the stream's context")
			assert.Equal(t, codes.Canceled, status.Code(s.handlerErr), "the handler's status")
			noticedWithin(t, "gRPC server, "+tt.name, fmt.Sprintf("stream context: %v (cause: %v); Watch returned: %v", s.ctxErr, s.cause, s.handlerErr), last, s.at, tt.bound)
		})
	}
}

// withUserTimeout returns c with UserTimeout d, as a client that writes its
// own TCP_USER_TIMEOUT leaves it.
func withUserTimeout(c keepalive.Config, d time.Duration) keepalive.Config {
	c.UserTimeout = d
	return c
}
