package integration_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// startedNATS starts the server on first use.
var startedNATS = sync.OnceValue(func() *natsServer { return timed("nats-server", startNATS) })

// natsServer is a nats-server with its monitoring endpoint, which lists
// each client's address as the server sees it.
type natsServer struct {
	server
	Monitor string // host:port of the HTTP monitoring endpoint
}

// natsSrv returns the package's nats-server, started on first use on
// 127.0.0.1 with a monitoring port.
func natsSrv(t testing.TB) *natsServer {
	t.Helper()
	startedNATS().need(t)
	return startedNATS()
}

func startNATS() *natsServer {
	bin, err := testserver.LookPath("nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server")
	if err != nil {
		return &natsServer{server: server{err: err}}
	}
	var monitor string
	s := startOnFreePort(func(port int) (*server, error) {
		mport, err := testserver.FreePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(port), "-m", strconv.Itoa(mport))
		p, err := testserver.Start("nats-server", cmd, filepath.Join(tmpRoot, "nats.log"), syscall.SIGKILL, nil, hostSpawn, onStop)
		if err != nil {
			return nil, err
		}
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		monitor = net.JoinHostPort("127.0.0.1", strconv.Itoa(mport))
		err = p.WaitReady(func(ctx context.Context) error {
			nc, err := nats.Connect("nats://"+s.Addr, nats.Timeout(time.Second), nats.NoReconnect())
			if err != nil {
				return err
			}
			nc.Close()
			_, err = natsClientPort(ctx, monitor, 0)
			return err
		})
		if err != nil {
			p.Kill()
			return nil, err
		}
		return s, nil
	})
	return &natsServer{server: *s, Monitor: monitor}
}

// natsClientPort asks the monitoring endpoint for the port of client cid as
// the server sees it (0 if there is no such client).
func natsClientPort(ctx context.Context, monitor string, cid uint64) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/connz?cid=%d", monitor, cid), nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("connz: %s", resp.Status)
	}
	var connz struct {
		Connections []struct {
			CID  uint64 `json:"cid"`
			Port int    `json:"port"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		return 0, err
	}
	for _, c := range connz.Connections {
		if c.CID == cid {
			return c.Port, nil
		}
	}
	return 0, nil
}

func TestNATS(t *testing.T) {
	t.Parallel()
	srv := natsSrv(t)
	rec := newRecorder(clientConfig)
	nc, err := nats.Connect("nats://"+srv.Addr, nats.SetCustomDialer(rec))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("keepalive")
	require.NoError(t, err)
	require.NoError(t, nc.Publish("keepalive", []byte(t.Name())))
	msg, err := sub.NextMsg(queryTimeout)
	require.NoError(t, err)
	assert.Equal(t, t.Name(), string(msg.Data))

	d := rec.only(t)
	assert.Equal(t, "Dial", d.Method)
	cid, err := nc.GetClientID()
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	port, err := natsClientPort(ctx, srv.Monitor, cid)
	require.NoError(t, err)
	assert.Equal(t, localPort(t, d.Conn), port, "the messages went over the dialed socket")
	assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
	assertSocket(t, d.Conn, clientConfig)
}

// deadPeerNATS leaves a subscriber waiting for a message and cuts its flow.
// nats.go reconnects by itself: the application's disconnect handler gets
// the read error, ETIMEDOUT, and the subscriber receives what is published
// after the reconnect, with no error of its own.
func deadPeerNATS(t *testing.T) {
	srv := natsSrv(t)
	rec := newRecorder(deadPeerConfig)
	type disconnect struct {
		err error
		at  time.Time
	}
	disconnected := make(chan disconnect, 1)
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect("nats://"+srv.Addr, nats.SetCustomDialer(rec),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			select {
			case disconnected <- disconnect{err, time.Now()}:
			default:
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			select {
			case reconnected <- struct{}{}:
			default:
			}
		}))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync("keepalive-deadpeer")
	require.NoError(t, err)
	require.NoError(t, nc.Flush())
	d := rec.only(t)
	var msg *nats.Msg
	done := goCall(func() error {
		var err error
		// Long: the subtest may wait for a parallel slot. Closing the
		// connection at cleanup ends it.
		msg, err = sub.NextMsg(10 * time.Minute)
		return err
	})
	last := cutFlow(t, d.Conn)
	t.Parallel()

	var dc disconnect
	select {
	case dc = <-disconnected:
	case <-time.After(awaitTimeout):
		require.FailNow(t, "no disconnect", "%v after the flow's last segment", time.Since(last))
	}
	assert.ErrorIs(t, dc.err, syscall.ETIMEDOUT, "the disconnect handler's error")
	select {
	case <-reconnected:
	case <-time.After(awaitTimeout):
		require.FailNow(t, "no reconnect")
	}
	redial := rec.redialAfter(t, 1)
	// The resent subscription has reached the server once a flush returns.
	require.NoError(t, nc.FlushTimeout(queryTimeout))
	other, err := nats.Connect("nats://" + srv.Addr)
	require.NoError(t, err)
	t.Cleanup(other.Close)
	require.NoError(t, other.Publish("keepalive-deadpeer", []byte("after")))
	o := await(t, done)
	require.NoError(t, o.err, "NextMsg")
	assert.Equal(t, "after", string(msg.Data))
	t.Logf("redialed %v after the disconnect", redial.At.Sub(dc.at).Round(time.Millisecond))
	noticed(t, "nats.go", fmt.Sprintf("DisconnectErrHandler: %v; reconnected, subscriber unaffected", dc.err), last, dc.at)
}
