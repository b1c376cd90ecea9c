package integration_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// rabbitServer starts the server on first use.
var rabbitServer = sync.OnceValue(func() *server { return timed("rabbitmq-server", startRabbitMQ) })

// rabbitmq returns the package's RabbitMQ broker, started on first use.
func rabbitmq(t testing.TB) *server {
	t.Helper()
	return rabbitServer().need(t)
}

// amqpURL returns the URL of the broker's default user, which may log in
// from loopback only.
func amqpURL(s *server) string { return "amqp://guest:guest@" + s.Addr + "/" }

// startRabbitMQ starts Debian's rabbitmq-server as the test's child, with
// everything of its own in a temporary folder: its HOME (and so its Erlang
// cookie), data, logs, an empty configuration and no plugins. It listens
// on 127.0.0.1 only: AMQP, Erlang distribution, and an epmd (Erlang's port
// mapper) that the test starts on a port of its own rather than letting
// Erlang start a shared one that would outlive the test.
func startRabbitMQ() *server {
	script, err := testserver.LookPath("rabbitmq-server", "/usr/lib/rabbitmq/bin/rabbitmq-server")
	if err != nil {
		return &server{err: err}
	}
	// /usr/sbin/rabbitmq-server switches to the rabbitmq user and logs to
	// /var/log; the script it runs starts the broker in the foreground.
	if s, err := filepath.EvalSymlinks("/usr/lib/rabbitmq/bin/rabbitmq-server"); err == nil {
		script = s
	}
	epmd, err := testserver.LookPath("epmd", "/usr/bin/epmd", "/usr/lib/erlang/erts-*/bin/epmd")
	if err != nil {
		return &server{err: err}
	}
	dir := filepath.Join(tmpRoot, "rabbitmq")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return &server{err: err}
	}
	for name, content := range map[string]string{"enabled_plugins": "[].\n", "rabbitmq.conf": "", "rabbitmq-env.conf": ""} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			return &server{err: err}
		}
	}
	epmdPort, err := startOnFreePortN(func(port int) error {
		p, err := testserver.Start("epmd", exec.Command(epmd, "-port", strconv.Itoa(port), "-address", "127.0.0.1"),
			filepath.Join(tmpRoot, "epmd.log"), syscall.SIGKILL, nil, hostSpawn, onStop)
		if err != nil {
			return err
		}
		return p.WaitReady(func(ctx context.Context) error {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				return err
			}
			return c.Close()
		})
	})
	if err != nil {
		return &server{err: err}
	}
	return startOnFreePort(func(port int) (*server, error) {
		distPort, err := testserver.FreePort()
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(script)
		cmd.Dir = dir
		cmd.Env = []string{
			"PATH=" + os.Getenv("PATH") + ":/usr/sbin:/usr/bin:/sbin:/bin",
			"HOME=" + dir,
			"LANG=C.UTF-8",
			"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(dir, "rabbitmq-env.conf"),
			"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.conf"),
			"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
			"RABBITMQ_NODENAME=keepalive-" + strconv.Itoa(os.Getpid()) + "@localhost",
			"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
			"RABBITMQ_NODE_PORT=" + strconv.Itoa(port),
			"RABBITMQ_DIST_PORT=" + strconv.Itoa(distPort),
			"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
			"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
			"RABBITMQ_LOGS=-",
			"RABBITMQ_PID_FILE=" + filepath.Join(dir, "rabbitmq.pid"),
			"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort),
			"RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}",
		}
		// The shell script execs erl, which execs the Erlang VM: the
		// process started is the broker, which stops cleanly on SIGTERM.
		p, err := testserver.Start("rabbitmq-server", cmd, filepath.Join(tmpRoot, "rabbitmq.log"), syscall.SIGKILL, nil, hostSpawn, onStop)
		if err != nil {
			return nil, err
		}
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		err = p.WaitReady(func(ctx context.Context) error {
			c, err := amqp.DialConfig(amqpURL(s), amqp.Config{Dial: amqp.DefaultDial(time.Second)})
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err != nil {
			p.Kill()
			return nil, err
		}
		return s, nil
	})
}

// startOnFreePortN runs start with a free port, and again with another if
// it failed, and returns the port it started on.
func startOnFreePortN(start func(port int) error) (int, error) {
	var port int
	s := startOnFreePort(func(p int) (*server, error) {
		port = p
		return &server{}, start(p)
	})
	return port, s.err
}

// amqpDial connects to s through rec, as amqp.Config.Dial; the connection
// is closed at cleanup.
func amqpDial(t *testing.T, s *server, rec *recorder) *amqp.Connection {
	t.Helper()
	conn, err := amqp.DialConfig(amqpURL(s), amqp.Config{Dial: rec.Dial})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

// amqpQueue declares a queue of its own on a new channel, which is closed
// at cleanup with its connection, and returns both.
func amqpQueue(t *testing.T, conn *amqp.Connection) (*amqp.Channel, amqp.Queue) {
	t.Helper()
	ch, err := conn.Channel()
	require.NoError(t, err)
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	require.NoError(t, err)
	return ch, q
}

func TestRabbitMQ(t *testing.T) {
	t.Parallel()
	s := rabbitmq(t)
	rec := newRecorder(clientConfig)
	conn := amqpDial(t, s, rec)
	ch, q := amqpQueue(t, conn)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	require.NoError(t, ch.PublishWithContext(ctx, "", q.Name, false, false, amqp.Publishing{Body: []byte(t.Name())}))
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	require.NoError(t, err)
	select {
	case m := <-deliveries:
		assert.Equal(t, t.Name(), string(m.Body))
	case <-ctx.Done():
		require.FailNow(t, "no delivery")
	}

	d := rec.only(t)
	assert.Equal(t, "Dial", d.Method)
	// The client speaks over the connection it was given, and there is no
	// other: the broker answered over it.
	assert.Equal(t, d.Conn.LocalAddr(), conn.LocalAddr(), "the connection's local address")
	assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
	assertSocket(t, d.Conn, clientConfig)
}

// deadPeerRabbitMQ leaves a consumer waiting for deliveries and cuts its
// flow. amqp091-go sends a heartbeat frame every 5 s (half the negotiated
// 10 s) when idle, so the flow is cut just after one, to leave keepalive
// alone to notice. The connection's NotifyClose channel gets an
// *amqp.Error, code 501 (frame error), whose Reason is the read error's
// text; the delivery channel is closed. The error is not wrapped: the chain
// ends there.
func deadPeerRabbitMQ(t *testing.T) {
	s := rabbitmq(t)
	rec := newRecorder(deadPeerConfig)
	conn := amqpDial(t, s, rec)
	ch, q := amqpQueue(t, conn)
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	require.NoError(t, err)
	closed := conn.NotifyClose(make(chan *amqp.Error, 1))
	d := rec.only(t)
	done := make(chan outcome, 1)
	go func() {
		e := <-closed
		at := time.Now()
		var err error
		if e != nil {
			err = e
		}
		done <- outcome{err, at}
	}()
	// The next heartbeat.
	waitSent(t, tcpOf(t, d.Conn), bytesAcked(t, d.Conn))
	last := cutFlow(t, d.Conn)
	t.Parallel()

	o := await(t, done)
	var ae *amqp.Error
	require.ErrorAs(t, o.err, &ae)
	assert.Equal(t, amqp.FrameError, ae.Code, "code")
	assert.Contains(t, ae.Reason, syscall.ETIMEDOUT.Error(), "reason")
	select {
	case _, ok := <-deliveries:
		assert.False(t, ok, "the delivery channel is closed")
	case <-time.After(queryTimeout):
		assert.Fail(t, "the delivery channel is still open")
	}
	noticed(t, "amqp091-go", fmt.Sprintf("NotifyClose: %v", o.err), last, o.at)
}
