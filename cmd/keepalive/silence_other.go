//go:build !linux

package main

import (
	"net"
	"time"
)

// silence reports that this system does not say how long a connection
// has received nothing from its peer.
func silence(net.Conn) (time.Duration, bool) { return 0, false }
