// Command dialer is a statically linked Go program (built with
// CGO_ENABLED=0) that the tests run in a cgroup under a policy: it sets
// keepalive as every Go program does, through net.Dialer and
// net.ListenConfig, after connecting and after accepting.
//
// It listens on 127.0.0.1; for each line "dial" on its standard input it
// dials its listener, accepts, and prints the descriptors of the dialled
// and the accepted connection.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	ka := flag.Duration("keepalive", 0, "net.Dialer and net.ListenConfig KeepAlive: 0 for Go's default (15s, 15s, 9), negative for off")
	flag.Parse()
	ln, err := (&net.ListenConfig{KeepAlive: *ka}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	d := &net.Dialer{KeepAlive: *ka, Timeout: 10 * time.Second}
	var keep []net.Conn
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		a, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		keep = append(keep, c, a)
		fmt.Println(fd(c), fd(a))
	}
}

func fd(c net.Conn) int {
	var n int
	rc, _ := c.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) { n = int(fd) })
	return n
}
