//go:build !plan9

package main

import "syscall"

// The errors with which a connection's read reports that the kernel gave
// up on the peer, and that the peer reset the connection.
var (
	errTimedOut error = syscall.ETIMEDOUT
	errReset    error = syscall.ECONNRESET
)
