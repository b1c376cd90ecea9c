package integration_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"

	coder "github.com/coder/websocket"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wsServer serves WebSocket on a listener from listen (the library's
// ListenConfig with serverConfig): each connection gets one text message,
// the client's address as the server sees it, and is then held open
// without another word until the test ends. It returns the ws:// URL and
// the listener.
func wsServer(t *testing.T) (string, *acceptRecorder) {
	t.Helper()
	ln := listen(t)
	release := make(chan struct{})
	up := websocket.Upgrader{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		if c.WriteMessage(websocket.TextMessage, []byte(r.RemoteAddr)) != nil {
			return
		}
		<-release
	})}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return "ws://" + ln.Addr().String(), ln
}

// wsClients are the two WebSocket clients, each dialing through its own
// hook and returning a function that reads one message.
var wsClients = []struct {
	name string
	// keepsChain tells whether a read error keeps the *net.OpError and
	// its errno in its chain. gorilla replaces an error whose Temporary
	// method says true (ETIMEDOUT's does) by a net.Error of its own that
	// keeps only the text and Timeout.
	keepsChain bool
	dial       func(t *testing.T, url string, rec *recorder) (read func() ([]byte, error))
}{
	{"gorilla/websocket", false, func(t *testing.T, url string, rec *recorder) func() ([]byte, error) {
		d := websocket.Dialer{NetDialContext: rec.DialContext}
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		c, resp, err := d.DialContext(ctx, url, nil)
		require.NoError(t, err)
		resp.Body.Close()
		t.Cleanup(func() { c.Close() })
		assert.Same(t, rec.only(t).Conn, c.NetConn(), "the connection's own net.Conn is the one the dialer returned")
		return func() ([]byte, error) {
			_, b, err := c.ReadMessage()
			return b, err
		}
	}},
	{"coder/websocket", true, func(t *testing.T, url string, rec *recorder) func() ([]byte, error) {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = rec.DialContext
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		c, resp, err := coder.Dial(ctx, url, &coder.DialOptions{HTTPClient: &http.Client{Transport: tr}})
		require.NoError(t, err)
		if resp.Body != nil {
			resp.Body.Close()
		}
		t.Cleanup(func() { c.CloseNow() })
		return func() ([]byte, error) {
			_, b, err := c.Read(context.Background())
			return b, err
		}
	}},
}

func TestWebSocket(t *testing.T) {
	t.Parallel()
	for _, tt := range wsClients {
		t.Run(tt.name, func(t *testing.T) {
			url, ln := wsServer(t)
			rec := newRecorder(clientConfig)
			read := tt.dial(t, url, rec)
			b, err := read()
			require.NoError(t, err)

			d := rec.only(t)
			assert.Equal(t, d.Conn.LocalAddr().String(), string(b), "the message came over the dialed socket")
			assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
			assertSocket(t, d.Conn, clientConfig)
			assertSocket(t, ln.from(t, d.Conn), serverConfig)
		})
	}
}

// deadPeerWebSocket leaves each client reading from a connection whose
// server says nothing more, and cuts its flow. coder/websocket returns the
// read error with ETIMEDOUT in its chain; gorilla/websocket returns a
// net.Error whose Timeout is true and whose text is the read error's,
// without the chain.
func deadPeerWebSocket(t *testing.T) {
	for _, tt := range wsClients {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := wsServer(t)
			rec := newRecorder(deadPeerConfig)
			read := tt.dial(t, url, rec)
			_, err := read()
			require.NoError(t, err)
			d := rec.only(t)
			done := goCall(func() error {
				_, err := read()
				return err
			})
			last := cutFlow(t, d.Conn)
			t.Parallel()

			o := await(t, done)
			require.Error(t, o.err)
			if tt.keepsChain {
				assert.ErrorIs(t, o.err, syscall.ETIMEDOUT)
			} else {
				assert.NotErrorIs(t, o.err, syscall.ETIMEDOUT)
				var ne net.Error
				if assert.True(t, errors.As(o.err, &ne), "want a net.Error, got %T", o.err) {
					assert.True(t, ne.Timeout(), "Timeout()")
				}
				assert.Contains(t, o.err.Error(), syscall.ETIMEDOUT.Error())
			}
			noticed(t, tt.name, o.err.Error(), last, o.at)
		})
	}
}
