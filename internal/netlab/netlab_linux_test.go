package netlab_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive/internal/netlab"
)

// TestLab checks the lab itself: the client reaches the server only through
// the firewall, sockets made in a namespace stay there, CutFlows drops
// established flows but lets new ones through, and nothing is left behind.
func TestLab(t *testing.T) {
	const tag = "kalab"
	var prefix string
	t.Run("lab", func(t *testing.T) {
		lab := netlab.New(t, netlab.Options{ConntrackTimeout: 30 * time.Second, Tag: tag})
		prefix = filepath.Join("/run/netns", tag+"-"+strconv.Itoa(os.Getpid())+"-")
		require.NotEmpty(t, labNamespaces(t, prefix), "namespaces while the lab lives")

		// The server's address exists only in its namespace: listening
		// there succeeds, and the client's address is what it sees.
		var ln net.Listener
		require.NoError(t, lab.Server(func() error {
			var err error
			ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.ServerAddr(), 0).String())
			return err
		}))
		t.Cleanup(func() { ln.Close() })
		_, err := net.Listen("tcp", netip.AddrPortFrom(lab.ServerAddr(), 0).String())
		assert.Error(t, err, "the server's address must not exist in the process's own namespace")

		// dial opens a connection from the client to the server.
		dial := func() (client, server net.Conn) {
			t.Helper()
			require.NoError(t, lab.Client(func() error {
				var err error
				client, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
				return err
			}))
			t.Cleanup(func() { client.Close() })
			server, err := ln.Accept()
			require.NoError(t, err)
			t.Cleanup(func() { server.Close() })
			return client, server
		}
		client, server := dial()
		assert.Equal(t, lab.ClientAddr(), server.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(), "the server sees the client's address: routed, not translated")
		roundTrip(t, client, server)
		assert.Zero(t, lab.Dropped(), "packets dropped before the cut")

		lab.CutFlows()
		_, err = client.Write([]byte("x"))
		require.NoError(t, err)
		require.NoError(t, server.SetReadDeadline(time.Now().Add(time.Second)))
		_, err = server.Read(make([]byte, 1))
		assert.ErrorIs(t, err, os.ErrDeadlineExceeded, "data of a cut flow must not arrive")
		assert.NotZero(t, lab.Dropped(), "packets dropped after the cut")

		client, server = dial()
		roundTrip(t, client, server)
	})
	if prefix != "" {
		assert.Empty(t, labNamespaces(t, prefix), "namespaces left after the test")
	}
}

// TestLabRun checks how Client and Server run fn: its error is returned, a
// panic is raised again in the caller, and a command it starts runs in the
// namespace.
func TestLabRun(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Tag: "karun"})
	errX := errors.New("x")
	tests := []struct {
		name string
		run  func(func() error) error
		addr netip.Addr
	}{
		{"client", lab.Client, lab.ClientAddr()},
		{"server", lab.Server, lab.ServerAddr()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Same(t, errX, tt.run(func() error { return errX }))
			assert.PanicsWithValue(t, "boom", func() { _ = tt.run(func() error { panic("boom") }) })
			var out []byte
			require.NoError(t, tt.run(func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				var err error
				out, err = exec.CommandContext(ctx, "ip", "-4", "-o", "addr", "show").CombinedOutput()
				return err
			}))
			assert.Contains(t, string(out), " inet "+tt.addr.String()+"/24 ", "addresses seen by a command started in fn")
		})
	}
}

func roundTrip(t *testing.T, a, b net.Conn) {
	t.Helper()
	require.NoError(t, b.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := a.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(b, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
}

// labNamespaces lists the namespaces whose /run/netns path starts with
// prefix.
func labNamespaces(t *testing.T, prefix string) []string {
	t.Helper()
	names, err := filepath.Glob(prefix + "*")
	require.NoError(t, err)
	return names
}

// TestLabRemovesStale checks that New deletes the namespaces a lab of a
// dead process left behind, and only those.
func TestLabRemovesStale(t *testing.T) {
	if os.Geteuid() != 0 {
		netlab.New(t, netlab.Options{}) // skips, or fails in CI, with the reason
	}
	dead := exec.Command("true")
	require.NoError(t, dead.Run())
	stale := "kastale-" + strconv.Itoa(dead.Process.Pid) + "-1-client"
	alive := "kastale-" + strconv.Itoa(os.Getpid()) + "-9999-client"
	for _, name := range []string{stale, alive} {
		out, err := exec.Command("ip", "netns", "add", name).CombinedOutput()
		require.NoError(t, err, "%s", out)
		t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	}
	netlab.New(t, netlab.Options{Tag: "kastale"})
	_, err := os.Stat(filepath.Join("/run/netns", stale))
	assert.ErrorIs(t, err, os.ErrNotExist, "namespace of a dead process")
	_, err = os.Stat(filepath.Join("/run/netns", alive))
	assert.NoError(t, err, "namespace of a live process")
}

// TestLabReset checks Options.Reset: once the firewall has forgotten a
// flow, the client's next packet is answered with a reset, and the
// client's connection fails with ECONNRESET instead of hanging.
func TestLabReset(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Reset: true, Tag: "kareset"})
	client, server := labPair(t, lab)
	roundTrip(t, client, server)

	lab.CutFlows()
	_, err := client.Write([]byte("x"))
	require.NoError(t, err)
	require.NoError(t, client.SetReadDeadline(time.Now().Add(2*time.Second)))
	_, err = client.Read(make([]byte, 1))
	assert.ErrorIs(t, err, syscall.ECONNRESET, "read after the firewall forgot the flow")
	assert.NotZero(t, lab.Dropped(), "packets rejected")
}

// TestLabClientStat checks that ClientStat reads the client namespace's
// own counters: a connection refused by the server counts there, and
// only there.
func TestLabClientStat(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Tag: "kastat"})
	before := lab.ClientStat("Tcp:AttemptFails")
	ln := labListen(t, lab)
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	require.NoError(t, ln.Close())
	err = lab.Client(func() error {
		_, err := net.DialTimeout("tcp", net.JoinHostPort(lab.ServerAddr().String(), port), time.Second)
		return err
	})
	require.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Equal(t, before+1, lab.ClientStat("Tcp:AttemptFails"), "failed connects in the client namespace")
	assert.Zero(t, lab.ClientStat("TcpExt:TCPSynRetrans"), "SYNs sent again")
}

// TestLabLoss checks Options.Loss: with 100 the SYN is lost and counted,
// with 0 nothing is, and with 50 twenty short dials lose packets (the
// chance that none is lost is below 2^-20).
func TestLabLoss(t *testing.T) {
	for _, tt := range []struct {
		loss int
		dial bool // whether the dial must succeed
	}{{0, true}, {50, false}, {100, false}} {
		t.Run(strconv.Itoa(tt.loss), func(t *testing.T) {
			lab := netlab.New(t, netlab.Options{Loss: tt.loss, Tag: "kaloss"})
			ln := labListen(t, lab)
			dial := func() error {
				return lab.Client(func() error {
					c, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond)
					if err == nil {
						c.Close()
					}
					return err
				})
			}
			if tt.loss == 50 {
				for range 20 {
					_ = dial()
				}
				assert.NotZero(t, lab.Lost(), "packets lost")
				return
			}
			err := dial()
			if tt.dial {
				assert.NoError(t, err)
				assert.Zero(t, lab.Lost(), "packets lost")
				return
			}
			assert.Error(t, err, "dial through a firewall that loses every packet")
			assert.NotZero(t, lab.Lost(), "packets lost")
		})
	}
}

// labListen listens on the server's address, closed at cleanup.
func labListen(t *testing.T, lab *netlab.Lab) net.Listener {
	t.Helper()
	var ln net.Listener
	require.NoError(t, lab.Server(func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(lab.ServerAddr(), 0).String())
		return err
	}))
	t.Cleanup(func() { ln.Close() })
	return ln
}

// labPair connects the client to a listener of the server's, through the
// firewall; both ends are closed at cleanup.
func labPair(t *testing.T, lab *netlab.Lab) (client, server net.Conn) {
	t.Helper()
	ln := labListen(t, lab)
	require.NoError(t, lab.Client(func() error {
		var err error
		client, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}))
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { server.Close() })
	return client, server
}

// TestLabLeavesThreads checks that running in a lab's namespaces leaves
// every thread of the process in its own: a thread that stayed in a lab's
// namespace would make later code (and /proc/self/net) see the lab's
// network instead of the host's.
func TestLabLeavesThreads(t *testing.T) {
	lab := netlab.New(t, netlab.Options{Tag: "threads"})
	host, err := os.Readlink("/proc/self/ns/net")
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, lab.Client(func() error { return nil }))
		}()
	}
	wg.Wait()
	tasks, err := os.ReadDir("/proc/self/task")
	require.NoError(t, err)
	for _, task := range tasks {
		ns, err := os.Readlink("/proc/self/task/" + task.Name() + "/ns/net")
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended meanwhile
		}
		require.NoError(t, err)
		assert.Equal(t, host, ns, "thread %s", task.Name())
	}
}
