package testserver

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Where says where a server runs and how its processes start and stop.
type Where struct {
	// Root is a folder for the server's files, which the caller removes.
	Root string

	// Host is the address the server listens on: 127.0.0.1, or the
	// address of a lab's server.
	Host string

	// Spawn starts the server's process: from a thread that outlives it
	// (the caller's spawner), or in a lab's namespace ([NetnsSpawn]).
	Spawn SpawnFunc

	// Register registers the server's stop, such as t.Cleanup.
	Register func(func())

	// Dial connects to the server to see that it is ready; nil means a
	// net.Dialer. A server in a lab's namespace is reached from the lab's
	// client.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
}

func (w Where) addr(port int) string { return net.JoinHostPort(w.Host, strconv.Itoa(port)) }

func (w Where) dial(ctx context.Context, port int) (net.Conn, error) {
	if w.Dial != nil {
		return w.Dial(ctx, "tcp", w.addr(port))
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", w.addr(port))
}

// start starts cmd as name, its log in Root, and waits until ready
// succeeds.
func (w Where) start(name string, cmd *exec.Cmd, ready func(ctx context.Context) error) error {
	p, err := Start(name, cmd, filepath.Join(w.Root, name+".log"), syscall.SIGKILL, nil, w.Spawn, w.Register)
	if err != nil {
		return err
	}
	if err := p.WaitReady(ready); err != nil {
		p.Kill()
		return err
	}
	return nil
}

// accepts returns a readiness check that connects to port and, if want is
// not empty, reads the first line after sending say and checks that it
// starts with want.
func (w Where) accepts(port int, say, want string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		c, err := w.dial(ctx, port)
		if err != nil {
			return err
		}
		defer c.Close()
		if want == "" {
			return nil
		}
		if d, ok := ctx.Deadline(); ok {
			c.SetDeadline(d)
		}
		if _, err := c.Write([]byte(say)); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, want) {
			return fmt.Errorf("answered %q, not %s", line, want)
		}
		return nil
	}
}

// Socat starts socat as its manual shows an echo server: TCP-LISTEN with
// fork and socat's default listen backlog (5), each connection given to
// cat.
func (w Where) Socat(port int) error {
	bin, err := LookPath("socat", "/usr/bin/socat")
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, fmt.Sprintf("TCP-LISTEN:%d,bind=%s,fork,reuseaddr", port, w.Host), "EXEC:cat")
	return w.start(fmt.Sprintf("socat-%d", port), cmd, w.accepts(port, "", ""))
}

// Redis starts redis-server without persistence and with the options
// given, such as "--timeout", "3".
func (w Where) Redis(port int, options ...string) error {
	bin, err := LookPath("redis-server", "/usr/bin/redis-server")
	if err != nil {
		return err
	}
	dir := filepath.Join(w.Root, fmt.Sprintf("redis-%d", port))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	args := append([]string{"--port", strconv.Itoa(port), "--bind", w.Host, "--save", "", "--appendonly", "no",
		"--dir", dir, "--daemonize", "no", "--protected-mode", "no"}, options...)
	return w.start(fmt.Sprintf("redis-%d", port), exec.Command(bin, args...), w.accepts(port, "PING\r\n", "+PONG"))
}

// SSHD starts OpenSSH's sshd in the foreground with a host key of its own
// and the sshd_config lines given, such as "LoginGraceTime 3". It needs
// root, as sshd does, and makes sshd's privilege separation folder,
// /run/sshd, where it is missing.
func (w Where) SSHD(port int, config ...string) error {
	if os.Geteuid() != 0 {
		return Unavailable{"sshd needs root"}
	}
	bin, err := LookPath("sshd", "/usr/sbin/sshd")
	if err != nil {
		return err
	}
	keygen, err := LookPath("ssh-keygen", "/usr/bin/ssh-keygen")
	if err != nil {
		return err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return err
	}
	dir := filepath.Join(w.Root, fmt.Sprintf("sshd-%d", port))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	key := filepath.Join(dir, "host_ed25519_key")
	if err := Run(exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", key)); err != nil {
		return err
	}
	conf := filepath.Join(dir, "sshd_config")
	lines := append([]string{
		"Port " + strconv.Itoa(port),
		"ListenAddress " + w.Host,
		"HostKey " + key,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
	}, config...)
	if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	return w.start(fmt.Sprintf("sshd-%d", port), exec.Command(bin, "-D", "-e", "-f", conf), w.accepts(port, "", "SSH-"))
}

// Nginx starts nginx in the foreground, one worker, with the directives
// given in its http block, such as "client_header_timeout 3s;", and one
// server that answers every request with "ok".
func (w Where) Nginx(port int, http ...string) error {
	bin, err := LookPath("nginx", "/usr/sbin/nginx")
	if err != nil {
		return err
	}
	dir := filepath.Join(w.Root, fmt.Sprintf("nginx-%d", port))
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(dir, "tmp")
	conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %s;
error_log %s info;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path %[3]s;
	proxy_temp_path %[3]s;
	fastcgi_temp_path %[3]s;
	uwsgi_temp_path %[3]s;
	scgi_temp_path %[3]s;
	%s
	server {
		listen %s;
		location / { return 200 "ok\n"; }
	}
}
`, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "error.log"), tmp, strings.Join(http, "\n\t"), w.addr(port))
	confFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		return err
	}
	return w.start(fmt.Sprintf("nginx-%d", port), exec.Command(bin, "-p", dir, "-c", confFile),
		w.accepts(port, "GET / HTTP/1.0\r\n\r\n", "HTTP/1.1 200"))
}

// OnFreePort runs start with a loopback port that was free a moment ago,
// and again with another if it failed (another process may have taken the
// port in between), and returns the port.
func OnFreePort(start func(port int) error) (int, error) {
	var err error
	for range 3 {
		var port int
		if port, err = FreePort(); err != nil {
			break
		}
		if err = start(port); err == nil {
			return port, nil
		}
		var u Unavailable
		if errors.As(err, &u) {
			break
		}
	}
	return 0, err
}
