package keepalive

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"
)

// Dialer dials TCP connections that carry a Config, in the manner of
// [crypto/tls.Dialer]. DialContext is the dialer: the others adapt it to the
// shapes clients take as a dialer hook, one each, since a method value
// passes where a closure would otherwise have to be written at every call
// site:
//
//   - DialContext: net/http's Transport, pgx, go-redis, gorilla/websocket,
//     gomemcache, franz-go, go-mysql's replication.
//   - Dial: nats.go's CustomDialer and amqp091-go's Config.Dial, which take
//     no context.
//   - DialTimeout: with Dial, lib/pq's Dialer interface.
//   - DialAddress: grpc.WithContextDialer and mysql.RegisterDialContext,
//     which pass an address without a network.
//   - ConfiguredNetDialer: APIs that take only a [*net.Dialer], such as
//     [crypto/tls.Dialer].
//
// A Dialer may be used by many goroutines at once. The zero Dialer dials as
// the zero [net.Dialer] does, with keepalive on at the system's values.
type Dialer struct {
	// NetDialer is the dialer to dial with. If nil, the zero net.Dialer is
	// used. It is never modified. Its KeepAlive and KeepAliveConfig fields
	// are ignored for TCP networks, where Config wins. Its Control or
	// ControlContext hook runs as the standard library would run it, and
	// Config is applied after it, whole: an option the hook set that Config
	// leaves zero is put back to the system default.
	//
	// Note that on Linux a Multipath TCP socket refuses TCP_USER_TIMEOUT:
	// when Config.UserTimeout is set, the Dialer dials plain TCP even if
	// NetDialer.MultipathTCP reports true.
	NetDialer *net.Dialer

	// Config is applied to every connection dialed on a TCP network
	// ("tcp", "tcp4", "tcp6"). It is validated before any socket is
	// created. A zero field means the system default, as everywhere in
	// this package; the zero Config turns keepalive on with the system's
	// values.
	Config Config
}

// Dial connects to the address on the named network. It is DialContext with
// a background context.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialTimeout is Dial with a timeout, as [net.DialTimeout]: the connect
// fails once timeout has passed, or earlier at NetDialer's own Timeout or
// Deadline. A timeout of zero or less sets none. With Dial it satisfies
// lib/pq's Dialer interface (lib/pq calls DialContext when the dialer has it,
// with connect_timeout as the context's deadline).
func (d *Dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	if timeout <= 0 {
		return d.DialContext(context.Background(), network, address)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

// DialContext connects to the address on the named network using the
// provided context, as [net.Dialer.DialContext]. A connection on a TCP
// network has Config applied before it is returned; if that fails, the
// connection is closed and the error returned. Other networks ("udp",
// "unix", ...) are dialed by NetDialer untouched.
//
// An invalid Config fails with the [Config.Validate] error before any socket
// is created. Errors from connecting are the standard library's, as
// [net.Dialer] returns them, so that clients which inspect a [*net.OpError]
// keep working; errors applying the Config start with "keepalive:".
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	base := d.base()
	if !isTCP(network) {
		return base.DialContext(ctx, network, address)
	}
	// A copy, so that the standard library's own keepalive stays off
	// (KeepAlive 0 would apply 15 s / 15 s / 9 and discard any error).
	nd := *base
	d.Config.prepareDialer(&nd)
	if base.Control != nil || base.ControlContext != nil {
		// The caller's hook may change the options: apply the Config
		// after it, in the hook.
		nd.Control = nil
		nd.ControlContext = chainControlContext(base.Control, base.ControlContext, d.Config)
		return nd.DialContext(ctx, network, address)
	}
	// Without a hook, the options are set after connect: a hook costs the
	// standard library seven allocations a dial, setting them afterwards
	// none beyond the RawConn that reaches the descriptor.
	conn, err := nd.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return setOrClose(conn, d.Config)
}

// setOrClose applies the validated c to a new TCP connection, closing it if
// that fails.
//
// It costs no allocation: SyscallConn and Control are called here on the
// *net.TCPConn itself, so that the compiler inlines SyscallConn, calls
// Control on the concrete type, and keeps the RawConn and the closure on
// the stack (a RawConn passed on as an interface escapes to the heap).
func setOrClose(conn net.Conn, c Config) (net.Conn, error) {
	tc := conn.(*net.TCPConn)
	rc, err := tc.SyscallConn()
	if err == nil {
		var aerr error
		err = rc.Control(func(fd uintptr) { aerr = apply(fd, c, nil) })
		if err == nil {
			err = aerr
		}
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("keepalive: set %s: %w", describe(tc), err)
	}
	return conn, nil
}

// DialAddress dials address on "tcp", as DialContext does. Its signature is
// the address-only dialer that grpc.WithContextDialer and
// mysql.RegisterDialContext take.
func (d *Dialer) DialAddress(ctx context.Context, address string) (net.Conn, error) {
	return d.DialContext(ctx, "tcp", address)
}

// ConfiguredNetDialer returns a copy of NetDialer that applies Config through
// a ControlContext hook, for APIs that accept only a [*net.Dialer], such as
// [crypto/tls.Dialer] and [crypto/tls.DialWithDialer]. NetDialer's own
// Control or ControlContext hook runs first, as the standard library would
// run it, then the Config is applied whole; its KeepAlive is set to -1 so
// that the standard library does not overwrite the values after connect.
// The Config is validated now; the hook validates nothing more per dial.
//
// A dial through the returned dialer allocates more than one through
// [Dialer.DialContext], which sets the options after connect when NetDialer
// has no hook.
func (d *Dialer) ConfiguredNetDialer() (*net.Dialer, error) {
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	base := d.base()
	nd := *base
	d.Config.prepareDialer(&nd)
	nd.Control = nil
	nd.ControlContext = chainControlContext(base.Control, base.ControlContext, d.Config)
	return &nd, nil
}

func (d *Dialer) base() *net.Dialer {
	if d.NetDialer != nil {
		return d.NetDialer
	}
	return &net.Dialer{}
}

// prepareDialer turns the standard library's keepalive off in nd, and
// Multipath TCP too when c needs a user timeout.
func (c Config) prepareDialer(nd *net.Dialer) {
	nd.KeepAlive = -1
	nd.KeepAliveConfig = net.KeepAliveConfig{}
	if c.UserTimeout != 0 {
		nd.SetMultipathTCP(false)
	}
}

// chainControlContext returns a ControlContext hook that runs the caller's
// hook as the standard library would (controlContext if set, else control),
// then applies the validated c to a TCP socket. Without a caller's hook it
// sets c as [Config.Control] does. With one, it reads the new socket's
// values (the system defaults) before the caller's hook runs and puts them
// back afterwards for each zero field of c, so that the Config decides every
// option whatever the hook set.
func chainControlContext(control func(string, string, syscall.RawConn) error, controlContext func(context.Context, string, string, syscall.RawConn) error, c Config) func(context.Context, string, string, syscall.RawConn) error {
	hook := func(ctx context.Context, network, address string, rc syscall.RawConn) error {
		if controlContext != nil {
			return controlContext(ctx, network, address, rc)
		}
		return control(network, address, rc)
	}
	if control == nil && controlContext == nil {
		return func(_ context.Context, network, address string, rc syscall.RawConn) error {
			if !isTCP(network) {
				return nil
			}
			return controlNew(rc, c, network+" "+address)
		}
	}
	return func(ctx context.Context, network, address string, rc syscall.RawConn) error {
		if !isTCP(network) {
			return hook(ctx, network, address, rc)
		}
		// The new socket's values are the system defaults: those a zero
		// field of c puts back over what the hook sets.
		var before Config
		var rerr error
		if err := rc.Control(func(fd uintptr) { before, rerr = read(fd) }); err != nil {
			return err
		}
		if err := hook(ctx, network, address, rc); err != nil {
			return err
		}
		var aerr error
		err := rc.Control(func(fd uintptr) {
			if rerr != nil {
				// The values cannot be read back here: set the
				// non-zero fields.
				aerr = apply(fd, c, nil)
				return
			}
			aerr = apply(fd, c, &before)
		})
		if err == nil {
			err = aerr
		}
		if err != nil {
			return fmt.Errorf("keepalive: set %s %s: %w", network, address, err)
		}
		return nil
	}
}
