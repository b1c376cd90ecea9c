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
			want: []string{"received 5 bytes after", "without data\n", "without data: the peer closed the connection (FIN)"}},
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
			assert.Contains(t, r.stdout, "watching: sending nothing; a vanished peer should be declared dead within 50s of silence (silence: nothing received from the peer, not even the answer to a keepalive probe)\n")
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
	const line = " (a vanished peer is declared dead within 50s of silence)\x1b[K"
	assert.True(t, strings.HasPrefix(stderr.String(), "\rsilent for 0s, no data for 0s"+line), stderr.String())
	assert.Contains(t, stderr.String(), "\rsilent for 1s, no data for 1s"+line)
	assert.Contains(t, stderr.String(), "\rsilent for 2s, no data for 2s"+line)
	assert.True(t, strings.HasSuffix(stderr.String(), line+"\r\x1b[K"), "erased at the end")
}

// TestDialWatchTimeout checks that dial -watch reports the kernel
// declaring a vanished peer dead, after the silence its first line
// promised: both lines count silence the same way, from the last packet
// received from the peer, keepalive answers included, as the kernel does.
// The server sits behind a firewall that, once it has forgotten a flow,
// drops its packets. In the first case it forgets the flow after 1s of
// silence, so the first probe, after 2s, and the one after it go
// unanswered: silence and the time without data are the same. In the
// second it keeps the flow until the test cuts every flow, 3.5s after the
// dial: the probes at 1s, 2s and 3s are answered, those after go
// unanswered, and the peer is declared dead 3s after the last answer,
// about 6s after the last data. The reported silence must be the bound,
// whatever came before.
func TestDialWatchTimeout(t *testing.T) {
	for _, tt := range []struct {
		name      string
		conntrack time.Duration
		config    string
		bound     time.Duration
		cutAfter  time.Duration // 0: never cut
		noData    time.Duration // about how long without data at the end
	}{
		{"silent from the start", time.Second, "idle=2s,interval=1s,count=1,user-timeout=0", 3 * time.Second, 0, 3 * time.Second},
		{"probes answered, then the path cut", time.Minute, "idle=1s,interval=1s,count=2,user-timeout=0", 3 * time.Second, 3500 * time.Millisecond, 6 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			lab := netlab.New(t, netlab.Options{ConntrackTimeout: tt.conntrack, Tag: "kacli"})
			var ln net.Listener
			require.NoError(t, lab.Server(func() error {
				var err error
				ln, err = net.Listen("tcp4", net.JoinHostPort(lab.ServerAddr().String(), "0"))
				return err
			}))
			t.Cleanup(func() { ln.Close() })
			accepted := acceptAll(t, ln)
			var r runResult
			done := make(chan error, 1)
			go func() {
				done <- lab.Client(func() error {
					r = runArgs(context.Background(), "dial", "-watch", "-config", tt.config, ln.Addr().String())
					return nil
				})
			}()
			if tt.cutAfter > 0 {
				<-accepted
				time.Sleep(tt.cutAfter)
				lab.CutFlows()
			}
			require.NoError(t, <-done)
			t.Logf("stdout:\n%sstderr:\n%s", r.stdout, r.stderr)
			assert.Equal(t, exitFail, r.code)
			assert.Contains(t, r.stdout, fmt.Sprintf("a vanished peer should be declared dead within %v of silence (silence: nothing received from the peer, not even the answer to a keepalive probe)\n", tt.bound))
			assert.Regexp(t, `^keepalive dial: read tcp4? \S+->\S+: read: connection timed out\n$`, r.stderr)
			m := regexp.MustCompile(`\nafter (\S+) of silence \((\S+) without data\): the kernel declared the peer dead \(ETIMEDOUT\): its keepalive probes went unanswered\n`).FindStringSubmatch(r.stdout)
			require.NotNil(t, m, "no ETIMEDOUT report")
			silence, err := time.ParseDuration(m[1])
			require.NoError(t, err)
			noData, err := time.ParseDuration(m[2])
			require.NoError(t, err)
			// The kernel gives up at a probe timer no sooner than the bound
			// after the last packet it received; its timers may fire late,
			// and the command reads the silence once the read has woken:
			// 1s above covers a loaded machine, and is less than the
			// seconds of answered probes in the second case.
			lower, upper := tt.bound-50*time.Millisecond, tt.bound+time.Second
			t.Logf("reported %v of silence (bound %v, accepted %v..%v), %v without data (about %v)", silence, tt.bound, lower, upper, noData, tt.noData)
			assert.GreaterOrEqual(t, silence, lower)
			assert.LessOrEqual(t, silence, upper)
			assert.InDelta(t, tt.noData.Seconds(), noData.Seconds(), 1, "time without data")
			assert.GreaterOrEqual(t, noData, silence-50*time.Millisecond, "data stops no later than every packet")
		})
	}
}
