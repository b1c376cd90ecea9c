package wine_test

import (
	"context"
	"net"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/windows"

	"github.com/keepalive-go/keepalive/internal/wine"
)

// TestKeepaliveVals sets each case of keepaliveVals on both ends of a
// loopback connection with SIO_KEEPALIVE_VALS and holds them, so that the
// Linux side of TestKeepaliveValsUnderWine can read what the kernel holds.
// On Windows it checks only that the ioctl succeeds.
func TestKeepaliveVals(t *testing.T) {
	for _, c := range keepaliveVals {
		t.Run(c.name, func(t *testing.T) {
			dialed, accepted := loopbackPair(t)
			ka := windows.TCPKeepalive{Time: c.idleMS, Interval: c.intervalMS}
			if c.on {
				ka.OnOff = 1
			}
			for _, e := range []struct {
				end  string
				conn net.Conn
			}{{"dialed", dialed}, {"accepted", accepted}} {
				end, conn := e.end, e.conn
				rc, err := conn.(*net.TCPConn).SyscallConn()
				require.NoError(t, err)
				var ioctlErr error
				require.NoError(t, rc.Control(func(fd uintptr) {
					var ret uint32
					ioctlErr = windows.WSAIoctl(windows.Handle(fd), windows.SIO_KEEPALIVE_VALS,
						(*byte)(unsafe.Pointer(&ka)), uint32(unsafe.Sizeof(ka)), nil, 0, &ret, nil, 0)
				}))
				require.NoError(t, ioctlErr, "WSAIoctl(SIO_KEEPALIVE_VALS, %+v) on the %s end", ka, end)
				wine.Hold(t, c.name+"/"+end, conn.LocalAddr(), conn.RemoteAddr())
			}
		})
	}
}

// loopbackPair returns both ends of a new loopback TCP connection, with the
// standard library's keepalive off; both are closed at cleanup.
func loopbackPair(t *testing.T) (dialed, accepted net.Conn) {
	t.Helper()
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(ch)
			return
		}
		ch <- c
	}()
	d := net.Dialer{KeepAlive: -1}
	dialed, err = d.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { dialed.Close() })
	accepted, ok := <-ch
	require.True(t, ok, "accept failed")
	t.Cleanup(func() { accepted.Close() })
	return dialed, accepted
}
