package integration_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
