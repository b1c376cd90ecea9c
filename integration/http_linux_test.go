package integration_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// remoteAddr answers every request with the client's address as the server
// sees it.
var remoteAddr = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, r.RemoteAddr)
})

func TestHTTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tls  bool
	}{
		{"http", false},
		{"https", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(remoteAddr)
			srv.Listener.Close()
			ln := listen(t)
			srv.Listener = ln
			if tt.tls {
				srv.StartTLS()
			} else {
				srv.Start()
			}
			t.Cleanup(srv.Close)

			rec := newRecorder(clientConfig)
			// The server's own client trusts its certificate; a clone keeps
			// that and dials through the recorder.
			tr := srv.Client().Transport.(*http.Transport).Clone()
			tr.DialContext = rec.DialContext
			t.Cleanup(tr.CloseIdleConnections)
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			require.NoError(t, err)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)

			d := rec.only(t)
			assert.Equal(t, d.Conn.LocalAddr().String(), string(body), "the request went over the dialed socket")
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
			assertSocket(t, d.Conn, clientConfig)
			assertSocket(t, ln.from(t, d.Conn), serverConfig)
		})
	}
}

// TestTLSDialer dials through crypto/tls with the net.Dialer that
// ConfiguredNetDialer returns.
func TestTLSDialer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		dial func(ctx context.Context, nd *net.Dialer, addr string, cfg *tls.Config) (*tls.Conn, error)
	}{
		{"tls.Dialer", func(ctx context.Context, nd *net.Dialer, addr string, cfg *tls.Config) (*tls.Conn, error) {
			td := &tls.Dialer{NetDialer: nd, Config: cfg}
			c, err := td.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			return c.(*tls.Conn), nil
		}},
		{"tls.DialWithDialer", func(_ context.Context, nd *net.Dialer, addr string, cfg *tls.Config) (*tls.Conn, error) {
			return tls.DialWithDialer(nd, "tcp", addr, cfg)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln := listen(t)
			tln := tls.NewListener(ln, serverTLS(t))
			go serveRemoteAddr(tln)

			d := &keepalive.Dialer{Config: clientConfig}
			nd, err := d.ConfiguredNetDialer()
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
			defer cancel()
			conn, err := tt.dial(ctx, nd, ln.Addr().String(), clientTLS(t))
			require.NoError(t, err)
			t.Cleanup(func() { conn.Close() })
			require.NoError(t, conn.SetDeadline(deadline(ctx)))
			line, err := bufio.NewReader(conn).ReadString('\n')
			require.NoError(t, err)

			assert.Equal(t, conn.LocalAddr().String(), strings.TrimSpace(line), "the server answered on the dialed socket")
			assert.True(t, conn.ConnectionState().HandshakeComplete)
			assertSocket(t, conn, clientConfig)
			assertSocket(t, ln.from(t, conn), serverConfig)
		})
	}
}

// serveRemoteAddr writes each client's address, as the server sees it, on
// a line, and leaves the connection open: the listener from listen closes
// it at cleanup.
func serveRemoteAddr(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go io.WriteString(c, c.RemoteAddr().String()+"\n")
	}
}

func deadline(ctx context.Context) (d time.Time) {
	d, _ = ctx.Deadline()
	return d
}

// deadPeerHTTP leaves a net/http request waiting for its response and
// cuts its flow.
func deadPeerHTTP(t *testing.T) {
	ln := listen(t)
	release := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	rec := newRecorder(deadPeerConfig)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = rec.DialContext
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	done := goCall(func() error {
		resp, err := client.Get("http://" + ln.Addr().String())
		if err == nil {
			resp.Body.Close()
		}
		return err
	})
	d := rec.waitDial(t)
	waitSent(t, tcpOf(t, d.Conn), 0)
	last := cutFlow(t, d.Conn)
	t.Parallel()

	o := await(t, done)
	require.Error(t, o.err)
	assert.ErrorIs(t, o.err, syscall.ETIMEDOUT)
	noticed(t, "net/http", o.err.Error(), last, o.at)
}

// connKey is the request context key under which the server keeps the
// connection it serves.
type connKey struct{}

// TestHTTPServer serves with net/http's Server on keepalive.Listen, and
// each request's handler reads its own connection back, as the server
// holds it, and answers with what getsockopt reports.
func TestHTTPServer(t *testing.T) {
	t.Parallel()
	ln, err := keepalive.Listen("tcp", "127.0.0.1:0", serverConfig)
	require.NoError(t, err)
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			k, err := readSockopts(r.Context().Value(connKey{}).(net.Conn))
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			json.NewEncoder(w).Encode(k)
		}),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String(), nil)
	require.NoError(t, err)
	resp, err := (&http.Client{Transport: tr}).Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var k kernel
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&k))
	assert.Equal(t, want(serverConfig), k, "the served connection, as the handler read it")
}

// vanish makes the client end of a connection vanish for the server: it
// stops sending (keepalive off) and answers nothing (a drop-all filter, as
// cutFlow attaches). It waits until both ends are quiet first, and returns
// the time the server's socket last received a segment.
func vanish(t testing.TB, client, server net.Conn) (last time.Time) {
	t.Helper()
	waitQuiet(t, tcpOf(t, server))
	require.NoError(t, keepalive.Disable(client))
	cutFlow(t, client)
	info := tcpInfo(t, tcpOf(t, server))
	since := min(info.Last_data_recv, info.Last_ack_recv)
	return time.Now().Add(-time.Duration(since) * time.Millisecond)
}

// deadPeerHTTPServer leaves a net/http handler waiting on its request's
// context and makes the client vanish. The server's connection, from
// keepalive.Listen, fails its background read with ETIMEDOUT and cancels
// the request's context: the handler sees context.Canceled, with no cause
// that tells why.
func deadPeerHTTPServer(t *testing.T) {
	ln, err := keepalive.Listen("tcp", "127.0.0.1:0", deadPeerConfig)
	require.NoError(t, err)
	served := make(chan net.Conn, 1)
	handled := make(chan struct{})
	done := make(chan outcome, 1)
	srv := &http.Server{
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			served <- c
			return ctx
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(handled)
			<-r.Context().Done()
			done <- outcome{context.Cause(r.Context()), time.Now()}
		}),
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	d := net.Dialer{KeepAlive: -1}
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	client, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { client.Close() })
	_, err = io.WriteString(client, "GET / HTTP/1.1\r\nHost: keepalive\r\n\r\n")
	require.NoError(t, err)
	server := <-served
	<-handled
	last := vanish(t, client, server)
	t.Parallel()

	o := await(t, done)
	assert.Equal(t, context.Canceled, o.err, "context.Cause of the request's context")
	noticed(t, "net/http Server", fmt.Sprintf("the request's context is done: %v", o.err), last, o.at)
}

// idleHTTP cuts the flow of a net/http connection idle in the Transport's
// pool. The Transport's reader of the idle connection gets the error and
// drops it from the pool, and the next request dials again: the
// application sees nothing.
func idleHTTP(t *testing.T) {
	ln := listen(t)
	srv := &http.Server{Handler: remoteAddr}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	rec := newRecorder(deadPeerConfig)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = rec.DialContext
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+ln.Addr().String(), nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return errors.Join(err, resp.Body.Close())
	}
	err := idleDeath(t, "net/http", rec, call, func(err error) string {
		return fmt.Sprintf("next request: %v; the Transport dialed again", err)
	})
	assert.NoError(t, err, "the next request")
	assert.Len(t, rec.Dials(t), 2, "dials")
}
