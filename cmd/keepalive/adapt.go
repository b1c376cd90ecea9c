package main

import (
	"net"

	"github.com/keepalive-go/keepalive"
)

// This file holds the command's only uses of library API that is about to
// change: reading a socket back, and a Config that turns keepalive off.

// get returns the keepalive values in force on conn, read back with
// getsockopt, and whether keepalive is on.
func get(conn net.Conn) (c keepalive.Config, on bool, err error) {
	s, err := keepalive.Get(conn)
	return s.Config, s.Enabled, err
}

// off reports whether applying c turns keepalive off. No Config does until
// Config has an Off field.
func off(c keepalive.Config) bool {
	return false
}
