//go:build unix

package keepalive_test

import (
	"context"
	"errors"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/keepalive-go/keepalive"
)

// The benchmarks compare this package with the standard library configured
// to the same effect, on loopback. Names put the implementation in the impl
// key, so that `benchstat -col /impl` shows them side by side:
//
//	BenchmarkDial/impl=stdlib                 net.Dialer{KeepAliveConfig: ...}
//	BenchmarkDial/impl=keepalive              keepalive.Dialer{Config: ...}
//	BenchmarkDial/impl=keepalive+usertimeout  the same, with UserTimeout
//	BenchmarkAccept/impl=...                  likewise with ListenConfig
//
// The standard library cannot set TCP_USER_TIMEOUT, so the third case has no
// counterpart there: it shows what UserTimeout costs.
//
// Besides ns/op and allocs/op, each reports cpu-ns/op: the process's user and
// system CPU time (getrusage RUSAGE_SELF) over the loop, per operation. On
// two cores wall time mostly measures how the dialing and the accepting
// goroutines interleave; CPU time measures the work. It is the whole
// process's: BenchmarkDial counts the accepting side's work too, and
// BenchmarkAccept the dialing side's. That side is the same plain
// net.Dialer or net.ListenConfig (keepalive off) whatever the impl, so it
// adds the same amount to every impl.

// benchConfig holds only what net.KeepAliveConfig can also express.
var benchConfig = keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 4}

// benchKeepAliveConfig is benchConfig for the standard library.
var benchKeepAliveConfig = net.KeepAliveConfig{Enable: true, Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 4}

// benchConfigUserTimeout adds the usual UserTimeout, Idle + Interval*Count.
var benchConfigUserTimeout = keepalive.Config{Idle: 30 * time.Second, Interval: 10 * time.Second, Count: 4, UserTimeout: 70 * time.Second}

// benchAhead bounds how many connections one side may open before the other
// has caught up, so that the listen backlog never overflows.
const benchAhead = 64

func BenchmarkDial(b *testing.B) {
	impls := []struct {
		name string
		dial func(ctx context.Context, network, address string) (net.Conn, error)
		want keepalive.Config // what the dialed socket must carry
	}{
		{"stdlib", (&net.Dialer{KeepAliveConfig: benchKeepAliveConfig}).DialContext, benchConfig},
		{"keepalive", (&keepalive.Dialer{Config: benchConfig}).DialContext, benchConfig},
		{"keepalive+usertimeout", (&keepalive.Dialer{Config: benchConfigUserTimeout}).DialContext, benchConfigUserTimeout},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			ctx := context.Background()
			lc := net.ListenConfig{KeepAlive: -1}
			ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ln.Close() })
			addr := ln.Addr().String()
			ahead := make(chan struct{}, benchAhead)
			accepted := benchAcceptAll(ln, ahead)

			ahead <- struct{}{} // warm-up
			conn, err := impl.dial(ctx, "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			benchCheck(b, conn, impl.want)
			conn.Close()

			b.ReportAllocs()
			b.ResetTimer()
			cpu, mallocs := benchCPU(b), benchMallocs()
			for i := 0; i < b.N; i++ {
				ahead <- struct{}{}
				conn, err := impl.dial(ctx, "tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				conn.Close()
			}
			cpu, mallocs = benchCPU(b)-cpu, benchMallocs()-mallocs
			b.StopTimer()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(mallocs)/float64(b.N), "mallocs/op")
			ln.Close()
			if err := <-accepted; err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkAccept(b *testing.B) {
	impls := []struct {
		name   string
		listen func(ctx context.Context, network, address string) (net.Listener, error)
		want   keepalive.Config // what the accepted socket must carry
	}{
		{"stdlib", (&net.ListenConfig{KeepAliveConfig: benchKeepAliveConfig}).Listen, benchConfig},
		{"keepalive", (&keepalive.ListenConfig{Config: benchConfig}).Listen, benchConfig},
		{"keepalive+usertimeout", (&keepalive.ListenConfig{Config: benchConfigUserTimeout}).Listen, benchConfigUserTimeout},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			ln, err := impl.listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { ln.Close() })
			ahead := make(chan struct{}, benchAhead)
			ctx, stop := context.WithCancel(context.Background())
			b.Cleanup(stop)
			dialed := benchDialAll(ctx, ln.Addr().String(), ahead)

			conn, err := ln.Accept() // warm-up
			if err != nil {
				b.Fatal(err)
			}
			<-ahead
			benchCheck(b, conn, impl.want)
			conn.Close()

			b.ReportAllocs()
			b.ResetTimer()
			cpu, mallocs := benchCPU(b), benchMallocs()
			for i := 0; i < b.N; i++ {
				conn, err := ln.Accept()
				if err != nil {
					b.Fatal(err)
				}
				<-ahead
				conn.Close()
			}
			cpu, mallocs = benchCPU(b)-cpu, benchMallocs()-mallocs
			b.StopTimer()
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(mallocs)/float64(b.N), "mallocs/op")
			stop()
			if err := <-dialed; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// benchAcceptAll accepts connections on ln until it is closed, taking a token
// from ahead for each. Each connection is closed with SO_LINGER 0 (a reset)
// benchAhead accepts later, after the dialer has closed its end: no socket
// lingers in TIME_WAIT to exhaust the loopback ports. The channel returned
// yields the first error other than the listener's closing.
func benchAcceptAll(ln net.Listener, ahead chan struct{}) <-chan error {
	errc := make(chan error, 1)
	go func() {
		var ring [benchAhead]net.Conn
		defer func() {
			for _, c := range ring {
				if c != nil {
					benchReset(c)
				}
			}
		}()
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					err = nil
				}
				errc <- err
				return
			}
			<-ahead
			if old := ring[i%benchAhead]; old != nil {
				benchReset(old)
			}
			ring[i%benchAhead] = c
		}
	}()
	return errc
}

// benchDialAll dials address with keepalive off until ctx is done, putting
// a token in ahead before each dial. It closes each connection with
// SO_LINGER 0 (a reset) benchAhead dials later, when the acceptor has
// accepted and closed it, so that no socket lingers in TIME_WAIT. The
// channel returned yields the first error.
func benchDialAll(ctx context.Context, address string, ahead chan struct{}) <-chan error {
	errc := make(chan error, 1)
	go func() {
		d := net.Dialer{KeepAlive: -1}
		var ring [benchAhead]net.Conn
		defer func() {
			for _, c := range ring {
				if c != nil {
					benchReset(c)
				}
			}
		}()
		for i := 0; ; i++ {
			select {
			case ahead <- struct{}{}:
			case <-ctx.Done():
				errc <- nil
				return
			}
			c, err := d.DialContext(ctx, "tcp", address)
			if err != nil {
				if ctx.Err() != nil {
					err = nil
				}
				errc <- err
				return
			}
			if old := ring[i%benchAhead]; old != nil {
				benchReset(old)
			}
			ring[i%benchAhead] = c
		}
	}()
	return errc
}

// benchReset closes c with a reset, leaving nothing in TIME_WAIT.
func benchReset(c net.Conn) {
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

// benchCheck makes sure that conn carries want, where Get can tell.
func benchCheck(b *testing.B, conn net.Conn, want keepalive.Config) {
	b.Helper()
	got, err := keepalive.Get(conn)
	if errors.Is(err, errors.ErrUnsupported) {
		return
	}
	if err != nil {
		b.Fatal(err)
	}
	if got != want {
		b.Fatalf("socket carries %+v; want %+v", got, want)
	}
}

// benchMallocs returns the number of heap allocations the process has
// made. The benchmarks report mallocs/op from it, allocs/op as a fraction:
// the testing package's own figure is truncated to a whole number, which
// turns a steady difference of one allocation into one of zero or two from
// round to round.
func benchMallocs() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.Mallocs
}

// benchCPU returns the user and system CPU time the process has used.
func benchCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
