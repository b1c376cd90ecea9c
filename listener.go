package keepalive

import (
	"context"
	"net"
	"syscall"
)

// ListenConfig listens for TCP connections that carry a Config.
//
// Where accepted sockets inherit the listening socket's options (Linux; see
// [Capabilities.AcceptInherits]) the Config is set once, on the listening
// socket: nothing is done per accept, and the listener returned is the one
// the standard library made (a [*net.TCPListener] for TCP). Elsewhere the
// Config is applied to each accepted connection; one that cannot take it is
// closed, and Accept returns the error.
//
// The zero ListenConfig listens as the zero [net.ListenConfig] does, with
// keepalive on at the system's values.
type ListenConfig struct {
	// NetListenConfig is the listen config to listen with. If nil, the zero
	// net.ListenConfig is used. It is never modified. Its KeepAlive and
	// KeepAliveConfig fields are ignored for TCP networks, where Config
	// wins. Its Control hook runs first, then Config is applied whole: an
	// option the hook set that Config leaves zero is put back to the system
	// default.
	//
	// Note that since Go 1.24 a Linux listener may use Multipath TCP by
	// default, and a Multipath TCP socket refuses TCP_USER_TIMEOUT: when
	// Config.UserTimeout is set, the listener uses plain TCP. (Left to
	// itself the standard library would retry a listen whose hook failed on
	// a Multipath TCP socket with plain TCP, running the hook twice.)
	NetListenConfig *net.ListenConfig

	// Config is applied to every connection accepted on a TCP network
	// ("tcp", "tcp4", "tcp6"). It is validated before any socket is
	// created. A zero field means the system default, as everywhere in
	// this package; the zero Config turns keepalive on with the system's
	// values.
	Config Config
}

// Listen announces on the local network address, as
// [net.ListenConfig.Listen]. Networks other than TCP ("unix", ...) are
// listened on by NetListenConfig untouched. An invalid Config fails with the
// [Config.Validate] error before any socket is created.
func (lc *ListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if err := lc.Config.Validate(); err != nil {
		return nil, err
	}
	base := lc.NetListenConfig
	if base == nil {
		base = &net.ListenConfig{}
	}
	if !isTCP(network) {
		return base.Listen(ctx, network, address)
	}
	nl := *base
	nl.KeepAlive = -1
	nl.KeepAliveConfig = net.KeepAliveConfig{}
	if lc.Config.UserTimeout != 0 {
		nl.SetMultipathTCP(false)
	}
	if acceptInherits {
		hook := chainControlContext(base.Control, nil, lc.Config)
		nl.Control = func(network, address string, rc syscall.RawConn) error {
			return hook(ctx, network, address, rc)
		}
		return nl.Listen(ctx, network, address)
	}
	ln, err := nl.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &listener{Listener: ln, c: lc.Config}, nil
}

// Listen announces on the local network address with a Config, as
// [net.Listen]. See [ListenConfig].
func Listen(network, address string, c Config) (net.Listener, error) {
	lc := ListenConfig{Config: c}
	return lc.Listen(context.Background(), network, address)
}

// listener applies c to each accepted connection, where accepted sockets
// are not known to inherit the listening socket's options.
type listener struct {
	net.Listener
	c Config
}

func (l *listener) Accept() (net.Conn, error) {
	conn, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return setOrClose(conn, l.c)
}
