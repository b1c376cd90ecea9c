package integration_test

import (
	"bufio"
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

	"github.com/bradfitz/gomemcache/memcache"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// memcachedServer starts the server on first use.
var memcachedServer = sync.OnceValue(func() *server { return timed("memcached", startMemcached) })

// memcached returns the package's memcached, started on first use.
func memcached(t testing.TB) *server {
	t.Helper()
	return memcachedServer().need(t)
}

// startMemcached starts Debian's memcached on 127.0.0.1, TCP only, with
// 16 MB of memory.
func startMemcached() *server {
	bin, err := testserver.LookPath("memcached", "/usr/bin/memcached")
	if err != nil {
		return &server{err: err}
	}
	return startOnFreePort(func(port int) (*server, error) {
		args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(port), "-U", "0", "-m", "16"}
		if os.Geteuid() == 0 {
			args = append(args, "-u", "root") // else memcached refuses root
		}
		p, err := testserver.Start("memcached", exec.Command(bin, args...), filepath.Join(tmpRoot, "memcached.log"), syscall.SIGKILL, nil, hostSpawn, onStop)
		if err != nil {
			return nil, err
		}
		s := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		err = p.WaitReady(func(context.Context) error { return memcache.New(s.Addr).Ping() })
		if err != nil {
			p.Kill()
			return nil, err
		}
		return s, nil
	})
}

// memcachedClientPorts returns the remote ports of the connections
// memcached holds, as its "stats conns" lists them ("STAT 27:addr
// tcp:127.0.0.1:40514").
func memcachedClientPorts(t testing.TB, s *server) []int {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr, queryTimeout)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(queryTimeout)))
	_, err = fmt.Fprint(c, "stats conns\r\n")
	require.NoError(t, err)
	var ports []int
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := sc.Text()
		if line == "END" {
			return ports
		}
		f := strings.Fields(line)
		if len(f) == 3 && strings.HasSuffix(f[1], ":addr") {
			if _, p, err := net.SplitHostPort(strings.TrimPrefix(f[2], "tcp:")); err == nil {
				n, _ := strconv.Atoi(p)
				ports = append(ports, n)
			}
		}
	}
	require.NoError(t, sc.Err())
	require.FailNow(t, "stats conns ended without END")
	return nil
}

// memcacheClient returns a gomemcache client for s that dials through rec
// and keeps at most one idle connection.
func memcacheClient(s *server, rec *recorder) *memcache.Client {
	mc := memcache.New(s.Addr)
	mc.DialContext = rec.DialContext
	mc.MaxIdleConns = 1
	return mc
}

func TestMemcached(t *testing.T) {
	t.Parallel()
	s := memcached(t)
	rec := newRecorder(clientConfig)
	mc := memcacheClient(s, rec)
	t.Cleanup(func() { mc.Close() })
	key := "keepalive" + strconv.Itoa(os.Getpid())
	require.NoError(t, mc.Set(&memcache.Item{Key: key, Value: []byte(t.Name())}))
	it, err := mc.Get(key)
	require.NoError(t, err)
	assert.Equal(t, t.Name(), string(it.Value))

	d := rec.only(t)
	assert.Contains(t, memcachedClientPorts(t, s), localPort(t, d.Conn), "the server holds the dialed connection")
	assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
	assertSocket(t, d.Conn, clientConfig)
}

// idleMemcached cuts the flow of a connection idle in gomemcache's
// pool: the client has no call that waits on the server, and its own
// Timeout (500 ms by default) bounds every call. gomemcache does not look
// at an idle connection, so the next call takes the dead one from the pool
// and fails at once with the write error, ETIMEDOUT, and the call after it
// dials again.
func idleMemcached(t *testing.T) {
	s := memcached(t)
	rec := newRecorder(deadPeerConfig)
	mc := memcacheClient(s, rec)
	t.Cleanup(func() { mc.Close() })
	key := "deadpeer" + strconv.Itoa(os.Getpid())
	require.NoError(t, mc.Set(&memcache.Item{Key: key, Value: []byte("before")}))
	get := func() error {
		_, err := mc.Get(key)
		return err
	}
	err := idleDeath(t, "gomemcache", rec, get, func(err error) string {
		return fmt.Sprintf("next call: %v; the call after dials again", err)
	})
	assert.ErrorIs(t, err, syscall.ETIMEDOUT, "the first Get after the death")
	assert.Len(t, rec.Dials(t), 1, "the first Get used the pooled connection")
	it, err := mc.Get(key)
	require.NoError(t, err, "the second Get")
	assert.Equal(t, "before", string(it.Value))
	assert.Len(t, rec.Dials(t), 2, "the second Get dialed again")
}
