package audit

import (
	"syscall"

	"github.com/keepalive-go/keepalive"
)

// getConfig returns whether keepalive is on and the values in force on the
// socket behind rc, read by the library's one read path.
func getConfig(rc syscall.RawConn) (enabled bool, c keepalive.Config, err error) {
	c, err = keepalive.Get(rc)
	return !c.Off, c, err
}

// setConfig applies c to the socket behind rc with the library's Set: the
// whole Config, each zero field at the system default, or the socket as it
// was.
func setConfig(rc syscall.RawConn, c keepalive.Config) error {
	return keepalive.Set(rc, c)
}
