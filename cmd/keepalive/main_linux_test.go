package main

import (
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

func TestRunDemo(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want []string // lines of stdout, spaces squeezed
	}{
		{"no arguments", nil, []string{
			"requested config: idle 1m0s, interval 10s, count 5, user timeout 1m50s (0 = system default / none)",
			`as text: "idle=60s,interval=10s,count=5,user-timeout=110s"`,
			"on 1m0s 10s 5 1m50s",
			"with this config: 1m50s",
			"with this config: 1m50s (the user timeout)",
		}},
		{"config and field flags", []string{"-config", "idle=30s,count=4", "-interval", "7s"}, []string{
			"requested config: idle 30s, interval 7s, count 4, user timeout 0s (0 = system default / none)",
			`as text: "idle=30s,interval=7s,count=4"`,
			"on 30s 7s 4 0s",
			"with this config: 58s",
		}},
		{"zero Config", []string{"-config", ""}, []string{
			"requested config: idle 0s, interval 0s, count 0, user timeout 0s (0 = system default / none)",
			`as text: ""`,
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := runArgs(context.Background(), tt.args...)
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, 0, r.code)
			assert.Empty(t, r.stderr)
			out := squeeze(r.stdout)
			for _, w := range tt.want {
				assert.Contains(t, out, w)
			}
			assert.Regexp(t, `(?m)^dialed 127\.0\.0\.1:\d+ on `, out)
			assert.Regexp(t, `(?m)^accepted 127\.0\.0\.1:\d+ on `, out)
			sys, err := keepalive.SystemDefaults()
			require.NoError(t, err)
			assert.Contains(t, out, fmt.Sprintf("system defaults (sysctl net.ipv4.tcp_keepalive_*): idle %v, interval %v, count %d, no user timeout", sys.Idle, sys.Interval, sys.Count))
			assert.Contains(t, out, "with system defaults: "+keepalive.Config{}.DetectionTime(sys).String())
			rt, err := keepalive.RetransmitTimeout()
			require.NoError(t, err)
			assert.Contains(t, out, fmt.Sprintf("with system defaults: at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)", rt))
		})
	}
}

func TestRunDial(t *testing.T) {
	ln, accepted := loopback(t)
	rt, err := keepalive.RetransmitTimeout()
	require.NoError(t, err)
	for _, tt := range []struct {
		name string
		args []string
		want []string // in stdout, spaces squeezed
	}{
		{"default Config", nil, []string{
			"requested: idle=60s,interval=10s,count=5,user-timeout=110s",
			"in force: keepalive on, idle 1m0s, interval 10s, count 5, user timeout 1m50s (read back with getsockopt)",
			"on an idle connection: 1m50s: idle 1m0s + 5 unanswered probes × interval 10s (with the user timeout 1m50s the kernel gives up at the first probe timer after it, whatever the count)",
			"with data unacknowledged: 1m50s (the user timeout)",
		}},
		{"config", []string{"-config", "idle=30s,interval=5s,count=4"}, []string{
			"requested: idle=30s,interval=5s,count=4",
			"in force: keepalive on, idle 30s, interval 5s, count 4, user timeout 0s (read back with getsockopt)",
			"on an idle connection: 50s: idle 30s + 4 unanswered probes × interval 5s",
			fmt.Sprintf("with data unacknowledged: at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)", rt),
		}},
		{"flags after ADDR", []string{"-count", "2", "-user-timeout", "3500ms"}, []string{
			"in force: keepalive on, idle 1m0s, interval 10s, count 2, user timeout 3.5s",
			"on an idle connection: 1m10s: idle 1m0s + 1 unanswered probe × interval 10s (with the user timeout 3.5s the kernel gives up at the first probe timer after it, whatever the count)",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"dial"}, tt.args...)
			if tt.name == "flags after ADDR" {
				args = append([]string{"dial", ln.Addr().String()}, tt.args...)
			} else {
				args = append(args, ln.Addr().String())
			}
			r := runArgs(context.Background(), args...)
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, 0, r.code)
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
		assert.Equal(t, 1, r.code)
		assert.Empty(t, r.stdout)
		assert.Contains(t, r.stderr, "keepalive: dial tcp "+addr+": connect: connection refused")
	})
}

// TestRunDialWatch checks that dial -watch reports how a connection ends
// when the peer ends it, or when watching is interrupted.
func TestRunDialWatch(t *testing.T) {
	ln, accepted := loopback(t)
	for _, tt := range []struct {
		name   string
		peer   func(net.Conn) // what the peer does once connected
		cancel bool           // interrupt the watch instead
		code   int
		want   []string // in stdout
		stderr string
	}{
		{name: "peer closes", peer: func(c net.Conn) { c.Close() }, code: 0,
			want: []string{"the peer closed the connection (FIN)"}},
		{name: "peer resets", peer: func(c net.Conn) { c.(*net.TCPConn).SetLinger(0); c.Close() }, code: 1,
			want: []string{"the peer reset the connection (RST, ECONNRESET)"}, stderr: "connection reset by peer"},
		{name: "peer writes, then closes", peer: func(c net.Conn) { c.Write([]byte("hello")); time.Sleep(100 * time.Millisecond); c.Close() }, code: 0,
			want: []string{"received 5 bytes after", "silence counts from now", "the peer closed the connection (FIN)"}},
		{name: "interrupted", cancel: true, code: 0,
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
			r := runArgs(ctx, "dial", "-watch", "-config", "idle=30s,interval=5s,count=4", ln.Addr().String())
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, tt.code, r.code)
			assert.Contains(t, r.stdout, "watching: sending nothing; a vanished peer should be declared dead within 50s of silence")
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
			if tt.stderr == "" {
				assert.Empty(t, r.stderr)
			} else {
				assert.Contains(t, r.stderr, tt.stderr)
			}
		})
	}
}

// TestRunDialWatchTimeout checks that dial -watch reports the kernel
// declaring a vanished peer dead, and when. The server sits behind a
// firewall that forgets a flow after 1s of silence and then drops its
// packets, so that the first keepalive probe, after 2s, and the one after
// it go unanswered: the kernel must give up Idle + Interval*Count = 3s
// after the last packet it received, the end of the handshake.
func TestRunDialWatchTimeout(t *testing.T) {
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

	const config = "idle=2s,interval=1s,count=1"
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
	assert.Equal(t, 1, r.code)
	assert.Contains(t, r.stdout, "a vanished peer should be declared dead within 3s of silence")
	assert.Contains(t, r.stderr, "connection timed out")
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

func TestRunSysctl(t *testing.T) {
	for _, tt := range []struct {
		args []string
		c    keepalive.Config
	}{
		{nil, sample},
		{[]string{"-config", "idle=300s,interval=30s,count=4"}, keepalive.Config{Idle: 300 * time.Second, Interval: 30 * time.Second, Count: 4}},
		{[]string{"-config", "count=4", "-idle", "5m"}, keepalive.Config{Idle: 300 * time.Second, Count: 4}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runArgs(context.Background(), append([]string{"sysctl"}, tt.args...)...)
			assert.Equal(t, 0, r.code)
			assert.Empty(t, r.stderr)
			want, err := tt.c.SysctlConf()
			require.NoError(t, err)
			assert.Equal(t, want, r.stdout)
		})
	}
	r := runArgs(context.Background(), "sysctl", "-config", "idle=60s,interval=5s,count=3,user-timeout=75s")
	assert.Equal(t, `# TCP keepalive: idle=60s,interval=5s,count=3,user-timeout=75s
net.ipv4.tcp_keepalive_time = 60
net.ipv4.tcp_keepalive_intvl = 5
net.ipv4.tcp_keepalive_probes = 3
# UserTimeout 75s has no sysctl: TCP_USER_TIMEOUT is set on each socket only
`, r.stdout)
}

func TestRunSuggest(t *testing.T) {
	rt, err := keepalive.RetransmitTimeout()
	require.NoError(t, err)
	for _, tt := range []struct {
		idleTimeout, detect string
		want                []string
	}{
		{"350s", "30s", []string{
			"idle=15s,interval=5s,count=3,user-timeout=30s\n\nwhy:\n",
			"  - a vanished peer is noticed within 30s of silence (idle 15s + 3 unanswered probes × interval 5s); the target was 30s\n",
			"  - the path stays open: the first probe goes out after 15s of silence, and if it is lost the next after 20s, 330s before the idle timeout 350s\n",
			"  - 3 probes: 2 lost in a row do not close a healthy connection\n",
			fmt.Sprintf("  - user-timeout 30s: data left unacknowledged is given up on within the same time; without it, at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)\n", rt),
			"\ncheck it against a server: keepalive dial -config idle=15s,interval=5s,count=3,user-timeout=30s HOST:PORT\n",
		}},
		{"350s", "10m", []string{
			"idle=237s,interval=78s,count=3,user-timeout=471s\n",
			"  - a vanished peer is noticed within 471s of silence (idle 237s + 3 unanswered probes × interval 78s); the target was 600s: sooner, as the idle timeout bounds idle\n",
			"if it is lost the next after 315s, 35s before the idle timeout 350s\n",
		}},
		{"4m", "2s", []string{
			"idle=1s,interval=1s,count=1,user-timeout=2s\n",
			"  - 1 probe: a single lost probe closes a healthy connection; a longer -detect allows more\n",
		}},
	} {
		t.Run(tt.idleTimeout+" "+tt.detect, func(t *testing.T) {
			r := runArgs(context.Background(), "suggest", "-idle-timeout", tt.idleTimeout, "--detect", tt.detect)
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, 0, r.code)
			assert.Empty(t, r.stderr)
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
			// The first line is the Config, as ParseConfig reads it.
			first, _, _ := strings.Cut(r.stdout, "\n")
			c, err := keepalive.ParseConfig(first)
			require.NoError(t, err)
			it, _ := time.ParseDuration(tt.idleTimeout)
			d, _ := time.ParseDuration(tt.detect)
			want, err := keepalive.Suggest(it, d)
			require.NoError(t, err)
			assert.Equal(t, want, c)
		})
	}
}
