package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/netlab"
)

// loopback starts a listener on loopback that accepts connections and
// hands them to accepted; both are closed at cleanup.
func loopback(t *testing.T) (net.Listener, <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	return ln, acceptAll(t, ln)
}

// acceptAll accepts connections on ln until it is closed, hands them to the
// channel it returns, and closes them at cleanup.
func acceptAll(t *testing.T, ln net.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			ch <- c
		}
	}()
	return ch
}

func TestDial(t *testing.T) {
	ln, accepted := loopback(t)
	rt, err := keepalive.RetransmitTimeout()
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		args []string // ADDR is appended
		want []string // in stdout, spaces squeezed
	}{
		{"default Config", nil, []string{
			"requested: idle 1m0s, interval 10s, count 5, user timeout 1m50s\n",
			`as text: "idle=60s,interval=10s,count=5,user-timeout=110s"`,
			"in force: keepalive on, idle 1m0s, interval 10s, count 5, user timeout 1m50s (read back with getsockopt)\n",
			"with this config: 1m50s: idle 1m0s + 5 unanswered probes × interval 10s (with the user timeout 1m50s the kernel gives up at the first probe timer after it, whatever the count)\n",
			"with this config: 1m50s (the user timeout)\n",
		}},
		{"config", []string{"-config", "idle=30s,interval=5s,count=4,user-timeout=0"}, []string{
			"requested: idle 30s, interval 5s, count 4, no user timeout\n",
			"in force: keepalive on, idle 30s, interval 5s, count 4, no user timeout (read back with getsockopt)\n",
			"with this config: 50s: idle 30s + 4 unanswered probes × interval 5s\n",
			fmt.Sprintf("with this config: at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)\n", rt),
		}},
		{"config, the rest the defaults", []string{"-config", "idle=30s,count=4"}, []string{
			"in force: keepalive on, idle 30s, interval 10s, count 4, user timeout 1m10s (read back with getsockopt)\n",
			"with this config: 1m10s: idle 30s + 4 unanswered probes × interval 10s",
		}},
		{"flags after ADDR", []string{"ADDR", "-count", "2", "-user-timeout", "3500ms"}, []string{
			"in force: keepalive on, idle 1m0s, interval 10s, count 2, user timeout 3.5s",
			"with this config: 1m10s: idle 1m0s + 1 unanswered probe × interval 10s (with the user timeout 3.5s the kernel gives up at the first probe timer after it, whatever the count)",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"dial"}, tt.args...)
			if i := indexOf(args, "ADDR"); i >= 0 {
				args[i] = ln.Addr().String()
			} else {
				args = append(args, ln.Addr().String())
			}
			r := runArgs(context.Background(), args...)
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, exitOK, r.code)
			assert.Empty(t, r.stderr)
			out := squeeze(r.stdout)
			assert.Regexp(t, `^connected to `+regexp.QuoteMeta(ln.Addr().String())+` from 127\.0\.0\.1:\d+ in \S+\n`, out)
			for _, w := range tt.want {
				assert.Contains(t, out, w)
			}
			select {
			case <-accepted:
			case <-time.After(5 * time.Second):
				t.Fatal("the listener accepted no connection")
			}
		})
	}

	t.Run("refused", func(t *testing.T) {
		closed, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		addr := closed.Addr().String()
		require.NoError(t, closed.Close())
		r := runArgs(context.Background(), "dial", addr)
		assert.Equal(t, exitFail, r.code)
		assert.Empty(t, r.stdout)
		assert.Equal(t, "keepalive dial: dial tcp "+addr+": connect: connection refused\n", r.stderr)
	})
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

// TestDialWatch checks that dial -watch reports how a connection ends
// when the peer ends it, or when watching is interrupted.
func TestDialWatch(t *testing.T) {
	ln, accepted := loopback(t)
	for _, tt := range []struct {
		name   string
		peer   func(net.Conn) // what the peer does once connected
		cancel bool           // interrupt the watch instead
		code   int
		want   []string // in stdout
		stderr string
	}{
		{name: "peer closes", peer: func(c net.Conn) { c.Close() }, code: exitOK,
			want: []string{"the peer closed the connection (FIN)"}},
		{name: "peer resets", peer: func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() }, code: exitFail,
			want: []string{"the peer reset the connection (RST, ECONNRESET)"}, stderr: "keepalive dial: read tcp "},
		{name: "peer writes, then closes", peer: func(c net.Conn) { c.Write([]byte("hello")); time.Sleep(100 * time.Millisecond); c.Close() }, code: exitOK,
			want: []string{"received 5 bytes after", "silence counts from now", "the peer closed the connection (FIN)"}},
		{name: "interrupted", cancel: true, code: exitOK,
			want: []string{"stopped after", "the connection was still open"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go func() {
				select {
				case c := <-accepted:
					time.Sleep(100 * time.Millisecond)
					if tt.cancel {
						cancel()
					} else {
						tt.peer(c)
					}
				case <-ctx.Done():
				}
			}()
			r := runArgs(ctx, "dial", "-watch", "-config", "idle=30s,interval=5s,count=4,user-timeout=0", ln.Addr().String())
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, tt.code, r.code)
			assert.Contains(t, r.stdout, "watching: sending nothing; a vanished peer should be declared dead within 50s of silence")
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
			if tt.stderr == "" {
				assert.Empty(t, r.stderr)
			} else {
				assert.True(t, strings.HasPrefix(r.stderr, tt.stderr), r.stderr)
				assert.True(t, strings.HasSuffix(r.stderr, ": connection reset by peer\n"), r.stderr)
			}
		})
	}
}

// TestDialWatchProgress checks that on a terminal dial -watch shows how
// long the connection has been silent, on stderr, and erases it before it
// reports the end.
func TestDialWatchProgress(t *testing.T) {
	ln, accepted := loopback(t)
	go func() {
		c := <-accepted
		time.Sleep(2500 * time.Millisecond)
		c.Close()
	}()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"dial", "-watch", "-config", "idle=30s,interval=5s,count=4,user-timeout=0", ln.Addr().String()},
		&env{stdout: &stdout, stderr: &stderr, tty: true})
	t.Logf("stderr: %q", stderr.String())
	assert.Equal(t, exitOK, code)
	assert.Contains(t, stdout.String(), "the peer closed the connection (FIN)")
	assert.NotContains(t, stdout.String(), "silent for")
	const line = " (a vanished peer is declared dead within 50s)\x1b[K"
	assert.True(t, strings.HasPrefix(stderr.String(), "\rsilent for 0s"+line), stderr.String())
	assert.Contains(t, stderr.String(), "\rsilent for 1s"+line)
	assert.Contains(t, stderr.String(), "\rsilent for 2s"+line)
	assert.True(t, strings.HasSuffix(stderr.String(), line+"\r\x1b[K"), "erased at the end")
}

// TestDialWatchTimeout checks that dial -watch reports the kernel
// declaring a vanished peer dead, and when. The server sits behind a
// firewall that forgets a flow after 1s of silence and then drops its
// packets, so that the first keepalive probe, after 2s, and the one after
// it go unanswered: the kernel must give up Idle + Interval*Count = 3s
// after the last packet it received, the end of the handshake.
func TestDialWatchTimeout(t *testing.T) {
	t.Parallel()
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: time.Second, Tag: "kacli"})
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		var err error
		ln, err = net.Listen("tcp4", net.JoinHostPort(lab.ServerAddr().String(), "0"))
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	acceptAll(t, ln)

	const config = "idle=2s,interval=1s,count=1,user-timeout=0"
	const detection = 3 * time.Second
	var r runResult
	var elapsed time.Duration
	require.NoError(t, lab.Client(func() error {
		start := time.Now()
		r = runArgs(context.Background(), "dial", "-watch", "-config", config, ln.Addr().String())
		elapsed = time.Since(start)
		return nil
	}))
	t.Logf("stdout:\n%sstderr:\n%s", r.stdout, r.stderr)
	assert.Equal(t, exitFail, r.code)
	assert.Contains(t, r.stdout, "a vanished peer should be declared dead within 3s of silence")
	assert.Regexp(t, `^keepalive dial: read tcp4? \S+->\S+: read: connection timed out\n$`, r.stderr)
	m := regexp.MustCompile(`after (\S+) of silence: the kernel declared the peer dead \(ETIMEDOUT\): its keepalive probes went unanswered`).FindStringSubmatch(r.stdout)
	require.NotNil(t, m, "no ETIMEDOUT report")
	silence, err := time.ParseDuration(m[1])
	require.NoError(t, err)
	// The silence is counted from the return of the dial, a little after
	// the kernel received the handshake's last packet; 1.5s above covers a
	// loaded machine.
	lower, upper := detection-100*time.Millisecond, detection+1500*time.Millisecond
	t.Logf("reported %v of silence (bound %v..%v); run took %v", silence, lower, upper, elapsed.Round(time.Millisecond))
	assert.GreaterOrEqual(t, silence, lower)
	assert.LessOrEqual(t, silence, upper)
}
