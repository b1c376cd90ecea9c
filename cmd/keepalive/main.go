// Command keepalive shows, checks and chooses per-socket TCP keepalive
// settings.
//
// Usage:
//
//	keepalive [flags]            show keepalive on a loopback connection
//	keepalive dial [flags] ADDR  connect to ADDR and show the values in force
//	keepalive sysctl [flags]     print the sysctl lines for a Config
//	keepalive path [flags] HOST:PORT
//	                             find the idle timeout of a path
//	keepalive suggest -idle-timeout D -detect D
//	                             choose a Config for a path
//	keepalive audit [flags]      list TCP connections with their keepalive
//	keepalive apply -pid P [flags]
//	                             change keepalive on a running process
//	keepalive exporter [flags]   serve the audit as Prometheus metrics
//	keepalive enforce -cgroup PATH [flags] | -list | -remove -cgroup PATH
//	                             put a keepalive policy on a cgroup
//	keepalive help [COMMAND]     show the help of a command
//
// Run with no arguments, it dials a loopback listener with a sample Config,
// reads the options back from both the dialed and the accepted socket, and
// prints them next to the system defaults and the worst-case time each takes
// to notice a peer that has vanished.
//
// A Config is given as text, -config idle=30s,count=4, or field by field
// with -idle, -interval, -count and -user-timeout. The fields given win and
// the rest keep their defaults: a field's own flag wins over -config, and
// -config over the default, idle=60s,interval=10s,count=5, with a user
// timeout of idle + interval × count where the system has one. So -config
// idle=30s,count=4 is idle=30s,interval=10s,count=4,user-timeout=70s; 0
// leaves a field at the system default, and -config "" is the zero Config.
//
// dial connects to ADDR with the Config, prints the values the kernel
// reports for the socket and the worst-case time to notice a vanished peer.
// With -watch it then holds the connection idle, sending nothing, and
// reports when and how it ends: the kernel declaring the peer dead
// (ETIMEDOUT), or the peer closing or resetting it.
//
// sysctl prints the lines, as for /etc/sysctl.d/, that make a Config the
// machine-wide default. path finds the idle timeout of the path to
// HOST:PORT, after how long of silence a firewall, NAT or load balancer on
// the way forgets a connection, with keepalive probes alone (Linux), and
// prints the Config suggest makes from it. suggest prints the Config for a
// path whose middleboxes forget idle flows after -idle-timeout, when a
// vanished peer must be noticed within -detect, and why.
//
// audit lists every TCP connection on the host with the process that holds
// it and the keepalive values in force on its socket (read through
// pidfd_getfd and getsockopt; Linux), judged against -idle-timeout (will a
// middlebox with that idle timeout forget the flow?) and -detect (is a
// vanished peer noticed in time?): a table grouped by process, or -json.
// apply changes the fields given on a running process's connections
// without restarting it, leaving every other field as each socket has it,
// and reads each back. exporter serves the audit as
// Prometheus metrics; audit -prom writes them for node_exporter's textfile
// collector.
//
// enforce puts a policy on a cgroup v2 directory with BPF programs (Linux):
// every TCP connection its processes establish from then on, and those they
// hold already, get the Config, without a restart; -list shows the
// policies in force and -remove ends one.
//
// "keepalive COMMAND -h" shows a command's flags and examples, and what
// its exit statuses mean: 0 done, 1 its work failed (for dial, the
// connection; for apply, a socket not changed), 2 a bad command line, when
// nothing is done. Every message starts with the command's name, and a
// flag error names the flag and what it takes.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/term"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], osEnv())
	stop()
	os.Exit(code)
}

// osEnv is the env of the process: its standard output and error, and
// whether the error is a terminal.
func osEnv() *env {
	return &env{
		stdout: os.Stdout,
		stderr: os.Stderr,
		tty:    term.IsTerminal(int(os.Stderr.Fd())),
	}
}
