package integration_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// etcdServer starts the server on first use.
var etcdServer = sync.OnceValue(func() *server { return timed("etcd", startEtcd) })

// etcd returns the package's etcd server, started on first use.
func etcd(t testing.TB) *server {
	t.Helper()
	return etcdServer().need(t)
}

// startEtcd starts Debian's etcd (etcd-server) as a one-member cluster
// with a data folder of its own, its client and peer URLs on 127.0.0.1.
func startEtcd() *server {
	bin, err := testserver.LookPath("etcd", "/usr/bin/etcd")
	if err != nil {
		return &server{err: err}
	}
	dir := filepath.Join(tmpRoot, "etcd")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return &server{err: err}
	}
	attempt := 0
	return startOnFreePort(func(port int) (*server, error) {
		peerPort, err := testserver.FreePort()
		if err != nil {
			return nil, err
		}
		attempt++
		client := "http://127.0.0.1:" + strconv.Itoa(port)
		peer := "http://127.0.0.1:" + strconv.Itoa(peerPort)
		cmd := exec.Command(bin, "--name", "keepalive",
			"--data-dir", filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", "keepalive="+peer)
		p, err := testserver.Start("etcd", cmd, filepath.Join(tmpRoot, "etcd.log"), syscall.SIGKILL, nil, hostSpawn, onStop)
		if err != nil {
			return nil, err
		}
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		err = p.WaitReady(func(ctx context.Context) error {
			c, err := clientv3.New(clientv3.Config{Endpoints: []string{s.Addr}, DialTimeout: time.Second, Logger: zap.NewNop()})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Get(ctx, "ready")
			return err
		})
		if err != nil {
			p.Kill()
			return nil, err
		}
		return s, nil
	})
}

// etcdClient connects to s through rec, given to gRPC as the context
// dialer, with cfg's other fields; the client is closed at cleanup.
func etcdClient(t *testing.T, s *server, rec *recorder, cfg clientv3.Config) *clientv3.Client {
	t.Helper()
	cfg.Endpoints = []string{s.Addr}
	cfg.DialTimeout = queryTimeout
	cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(rec.DialAddress)}
	cfg.Logger = zap.NewNop()
	c, err := clientv3.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// TestEtcd dials through gRPC's context dialer, as clientv3's DialOptions
// take it, and shows where gRPC writes its own TCP_USER_TIMEOUT: clientv3
// turns DialKeepAliveTime and DialKeepAliveTimeout into gRPC's
// ClientParameters, whose Timeout gRPC writes over the Config's
// UserTimeout after the dial. Without DialKeepAliveTime the Config stands.
func TestEtcd(t *testing.T) {
	t.Parallel()
	s := etcd(t)
	tests := []struct {
		name        string
		cfg         clientv3.Config
		userTimeout time.Duration // in force once the requests are done
	}{
		{"no gRPC keepalive", clientv3.Config{}, clientConfig.UserTimeout},
		{"DialKeepAliveTimeout overrides", clientv3.Config{DialKeepAliveTime: 30 * time.Second, DialKeepAliveTimeout: 5 * time.Second}, 5 * time.Second},
		{"DialKeepAliveTimeout equal to Config.UserTimeout", clientv3.Config{DialKeepAliveTime: 30 * time.Second, DialKeepAliveTimeout: clientConfig.UserTimeout}, clientConfig.UserTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder(clientConfig)
			c := etcdClient(t, s, rec, tt.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			key := t.Name() + strconv.Itoa(os.Getpid())
			value := strings.Repeat("k", 8192)
			_, err := c.Put(ctx, key, value)
			require.NoError(t, err)
			d := rec.only(t)
			acked := bytesAcked(t, d.Conn)
			// A second Put of the same size: its bytes must go over the
			// socket.
			_, err = c.Put(ctx, key, value)
			require.NoError(t, err)
			resp, err := c.Get(ctx, key)
			require.NoError(t, err)
			require.Len(t, resp.Kvs, 1)
			assert.Equal(t, value, string(resp.Kvs[0].Value))

			assert.Equal(t, s.Addr, d.Address)
			assert.GreaterOrEqual(t, bytesAcked(t, d.Conn)-acked, uint64(len(value)), "bytes the server acknowledged on the dialed socket")
			assert.Len(t, rec.Dials(t), 1, "dials")
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned, before gRPC touched the socket")
			c2 := clientConfig
			c2.UserTimeout = tt.userTimeout
			assertSocket(t, d.Conn, c2)
		})
	}
}

// deadPeerEtcd leaves a watch waiting for events and cuts its flow. gRPC
// closes the connection and dials again by itself, and clientv3 resumes the
// watch: the application's watch channel gets no error, and a key put
// afterwards arrives on it.
func deadPeerEtcd(t *testing.T) {
	s := etcd(t)
	rec := newRecorder(deadPeerConfig)
	c := etcdClient(t, s, rec, clientv3.Config{})
	key := "deadpeer" + strconv.Itoa(os.Getpid())
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	watch := c.Watch(ctx, key)
	// The watch is registered on the server once a request made after it
	// on the same connection is answered: gRPC sends in order.
	reqCtx, reqCancel := context.WithTimeout(context.Background(), queryTimeout)
	defer reqCancel()
	_, err := c.Get(reqCtx, key)
	require.NoError(t, err)
	d := rec.only(t)
	type event struct {
		resp clientv3.WatchResponse
		ok   bool
	}
	events := make(chan event, 16)
	go func() {
		for {
			r, ok := <-watch
			events <- event{r, ok}
			if !ok {
				return
			}
		}
	}()
	last := cutFlow(t, d.Conn)
	t.Parallel()

	redial := rec.redialAfter(t, 1)
	reqCtx, reqCancel = context.WithTimeout(context.Background(), queryTimeout)
	defer reqCancel()
	_, err = c.Put(reqCtx, key, "after")
	require.NoError(t, err)
	for {
		select {
		case e := <-events:
			require.True(t, e.ok, "the watch channel closed")
			require.NoError(t, e.resp.Err(), "watch response")
			if len(e.resp.Events) == 0 {
				continue
			}
			assert.Equal(t, "after", string(e.resp.Events[0].Kv.Value))
			noticed(t, "etcd clientv3", "no error: gRPC dialed again, the watch resumed and got the key put after", last, redial.At)
			return
		case <-reqCtx.Done():
			require.FailNow(t, "no event on the watch")
		}
	}
}
