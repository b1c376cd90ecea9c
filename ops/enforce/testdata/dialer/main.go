// Command dialer is a statically linked Go program (built with
// CGO_ENABLED=0) that the tests run in a cgroup under a policy: it sets
// keepalive as every Go program does, through net.Dialer and
// net.ListenConfig, after connecting and after accepting.
//
// It listens on 127.0.0.1; for each line "dial" on its standard input it
// dials its listener, accepts, and prints the descriptors of the dialled
// and the accepted connection.
//
// With -mptcp it dials Multipath TCP.
//
// With -connect ADDR it is a line client instead, as socat STDIO TCP:ADDR
// is: it dials ADDR, sends each line of its standard input and prints each
// line it receives; when the connection fails it prints the error on its
// standard error and exits with status 1.
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
	connect := flag.String("connect", "", "dial this `address` and be a line client")
	mptcp := flag.Bool("mptcp", false, "dial Multipath TCP (Go's listeners use it by default where the kernel has it)")
	flag.Parse()
	d := &net.Dialer{KeepAlive: *ka, Timeout: 10 * time.Second}
	d.SetMultipathTCP(*mptcp)
	if *connect != "" {
		lineClient(d, *connect)
		return
	}
	ln, err := (&net.ListenConfig{KeepAlive: *ka}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	var keep []net.Conn
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			fail(err)
		}
		a, err := ln.Accept()
		if err != nil {
			fail(err)
		}
		keep = append(keep, c, a)
		fmt.Println(fd(c), fd(a))
	}
}

// lineClient dials addr, copies the lines of its standard input to the
// connection and those of the connection to its standard output, until
// the connection fails.
func lineClient(d *net.Dialer, addr string) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		fail(err)
	}
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if _, err := fmt.Fprintln(c, sc.Text()); err != nil {
				fail(err)
			}
		}
	}()
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		fmt.Println(sc.Text())
	}
	if err := sc.Err(); err != nil {
		fail(err)
	}
	fail(fmt.Errorf("%v closed the connection", addr))
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func fd(c net.Conn) int {
	var n int
	rc, _ := c.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) { n = int(fd) })
	return n
}
