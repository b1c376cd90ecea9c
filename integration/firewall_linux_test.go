package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/netlab"
)

// TestPgxThroughFirewall runs PostgreSQL behind a stateful firewall that
// forgets a flow after conntrackTimeout without packets and then drops every
// packet of it. A pgx connection left silent for longer than that still
// answers a query when it was dialed with the library (Idle below the
// timeout: the probes keep the flow known), and hangs until its context
// expires when it was dialed by pgx's own dialer (Go's default 15 s
// keepalive idle, longer than the timeout).
//
// The firewall's timeout is compressed from minutes to seconds; the two
// connections are silent at the same time, so the test takes about
// silence + failTimeout.
func TestPgxThroughFirewall(t *testing.T) {
	t.Parallel()
	const (
		conntrackTimeout = 5 * time.Second
		silence          = conntrackTimeout + 3*time.Second
		failTimeout      = 3 * time.Second // how long the query without the library is given
	)
	lab := netlab.New(t, netlab.Options{ConntrackTimeout: conntrackTimeout, Tag: "kaint"})
	pg, err := initPostgres("postgres-lab-")
	if u := (errUnavailable{}); errors.As(err, &u) {
		unavailable(t, u.reason)
	}
	require.NoError(t, err)
	require.NoError(t, pg.trust(lab.ClientAddr().String()+"/32"))
	addr := netip.AddrPortFrom(lab.ServerAddr(), 5432)
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", addr.Addr(), addr.Port())
	ready := pgReady(dsn)
	require.NoError(t, pg.start(addr.Addr().String(), int(addr.Port()), netnsSpawn(t, lab.Server), t.Cleanup,
		func(ctx context.Context) error { return lab.Client(func() error { return ready(ctx) }) }))

	tests := []struct {
		name     string
		config   *keepalive.Config // nil: pgx's own dialer
		survives bool
	}{
		{name: "keepalive.Dialer", config: &keepalive.Config{Idle: 2 * time.Second, Interval: time.Second, Count: 3}, survives: true},
		{name: "pgx's own dialer", survives: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := pgx.ParseConfig(dsn)
			require.NoError(t, err)
			if tt.config != nil {
				require.Less(t, tt.config.Idle, conntrackTimeout)
				cfg.DialFunc = (&keepalive.Dialer{Config: *tt.config}).DialContext
			}
			var conn *pgx.Conn
			require.NoError(t, lab.Client(func() error {
				ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
				defer cancel()
				var err error
				conn, err = pgx.ConnectConfig(ctx, cfg)
				return err
			}))
			t.Cleanup(func() { conn.Close(context.Background()) })
			k := readKernel(t, conn.PgConn().Conn())
			t.Logf("socket: keepalive %v, idle %v, interval %v, count %d; firewall forgets after %v",
				k.KeepAlive, k.Idle, k.Interval, k.Count, conntrackTimeout)
			if tt.config != nil {
				assert.Equal(t, want(*tt.config), k)
			}
			var one int
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			require.NoError(t, conn.QueryRow(ctx, "SELECT 1").Scan(&one), "before the silence")
			cancel()

			time.Sleep(silence)

			timeout := failTimeout
			if tt.survives {
				timeout = queryTimeout
			}
			ctx, cancel = context.WithTimeout(context.Background(), timeout)
			defer cancel()
			start := time.Now()
			err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
			t.Logf("query after %v of silence: %v after %v", silence, err, time.Since(start).Round(time.Millisecond))
			if tt.survives {
				assert.NoError(t, err, "a connection that kept the flow alive")
			} else {
				assert.Error(t, err, "a connection whose flow the firewall forgot")
			}
		})
	}
	// After the subtests: the failure is the firewall's doing.
	t.Cleanup(func() {
		n := lab.Dropped()
		t.Logf("firewall dropped %d packets", n)
		assert.NotZero(t, n, "packets the firewall dropped")
	})
}

// netnsSpawn returns a spawnFunc that starts processes in the namespace
// that run (a netlab.Lab's Client or Server) enters, from a thread that
// stays in that namespace until the test's cleanup; a process must be
// stopped before then (register its stop with t.Cleanup after this call),
// since the thread's end sends it its parent-death signal.
func netnsSpawn(t *testing.T, run func(func() error) error) spawnFunc {
	var ns *os.File
	require.NoError(t, run(func() error {
		var err error
		ns, err = os.Open("/proc/thread-self/ns/net")
		return err
	}))
	release := make(chan struct{})
	t.Cleanup(func() {
		close(release)
		ns.Close()
	})
	return func(start func() error) error {
		done := make(chan error, 1)
		go func() {
			// The thread is left locked, and so ends with the goroutine
			// instead of going back to the runtime in the wrong namespace.
			runtime.LockOSThread()
			if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
				done <- os.NewSyscallError("setns", err)
				return
			}
			done <- start()
			<-release
		}()
		return <-done
	}
}
