package keepalive

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/windows"
)

// TestWinsockNumbers checks winsock.go's copy of Winsock's numbers against
// x/sys/windows, which has them on Windows only.
func TestWinsockNumbers(t *testing.T) {
	for _, n := range []struct {
		name      string
		ours, sys int64
	}{
		{"SOL_SOCKET", wsSOLSocket, windows.SOL_SOCKET},
		{"SO_KEEPALIVE", wsSOKeepAlive, windows.SO_KEEPALIVE},
		{"IPPROTO_TCP", wsIPProtoTCP, windows.IPPROTO_TCP},
		{"TCP_KEEPIDLE", wsTCPKeepIdle, windows.TCP_KEEPIDLE},
		{"TCP_KEEPINTVL", wsTCPKeepIntvl, windows.TCP_KEEPINTVL},
		{"TCP_KEEPCNT", wsTCPKeepCnt, windows.TCP_KEEPCNT},
		{"TCP_MAXRT", wsTCPMaxRT, windows.TCP_MAXRT},
		{"SIO_KEEPALIVE_VALS", wsSIOKeepAliveVals, windows.SIO_KEEPALIVE_VALS},
	} {
		assert.Equal(t, n.sys, n.ours, n.name)
	}
}
