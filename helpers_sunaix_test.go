//go:build aix || solaris

package keepalive_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// loopbackPair dials a loopback listener with d, whose Config is applied to
// the dialed end, and accepts; all are closed at cleanup. It is the pair of
// helpers_linux_test.go for the systems whose tests cannot run where that
// file's Linux tools are.
func loopbackPair(t testing.TB, d *keepalive.Dialer) (dialed, accepted net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		ch <- result{c, err}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialed, err = d.DialContext(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { dialed.Close() })
	r := <-ch
	require.NoError(t, r.err)
	t.Cleanup(func() { r.c.Close() })
	return dialed, r.c
}
