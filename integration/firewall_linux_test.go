package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/netlab"
	"github.com/keepalive-go/keepalive/internal/testserver"
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
	pg, err := testserver.InitPostgres(tmpRoot, "postgres-lab-")
	if u := (testserver.Unavailable{}); errors.As(err, &u) {
		testserver.Skip(t, u.Reason)
	}
	require.NoError(t, err)
	require.NoError(t, pg.Trust(lab.ClientAddr().String()+"/32"))
	addr := netip.AddrPortFrom(lab.ServerAddr(), 5432)
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", addr.Addr(), addr.Port())
	ready := pgReady(dsn)
	require.NoError(t, pg.Start(addr.Addr().String(), int(addr.Port()), testserver.NetnsSpawn(t, lab.Server), t.Cleanup,
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
