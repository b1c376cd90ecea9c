package integration_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/keepalive-go/keepalive/internal/testserver"
)

// startedSSHD starts the server on first use.
var startedSSHD = sync.OnceValue(func() *sshServer { return timed("sshd", startSSHD) })

// sshServer is an OpenSSH sshd with a host key and one authorized key made
// for the test.
type sshServer struct {
	server
	User    string
	Signer  ssh.Signer    // the authorized user key
	HostKey ssh.PublicKey // what the client must see
}

// clientConfig returns the SSH client configuration that logs in to s.
func (s *sshServer) clientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Signer)},
		HostKeyCallback: ssh.FixedHostKey(s.HostKey),
		Timeout:         queryTimeout,
	}
}

// sshd returns the package's sshd, started on first use.
func sshd(t testing.TB) *sshServer {
	t.Helper()
	startedSSHD().need(t)
	return startedSSHD()
}

// startSSHD starts Debian's sshd (openssh-server) in the foreground with a
// configuration of its own: 127.0.0.1 only, a host key and an
// authorized_keys file in a temporary folder, public-key login only, no
// PAM, logging in as root. It needs root, as sshd does to log a user in,
// and sshd's privilege separation folder, /run/sshd, which the service
// manager makes on a full system and startSSHD makes where it is missing.
func startSSHD() *sshServer {
	fail := func(err error) *sshServer { return &sshServer{server: server{err: err}} }
	if os.Geteuid() != 0 {
		return fail(testserver.Unavailable{Reason: "sshd needs root to log a user in: run the tests as root"})
	}
	bin, err := testserver.LookPath("sshd", "/usr/sbin/sshd")
	if err != nil {
		return fail(err)
	}
	u, err := user.Current()
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fail(err)
	}
	dir := filepath.Join(tmpRoot, "sshd")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fail(err)
	}
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fail(err)
	}
	block, err := ssh.MarshalPrivateKey(hostPriv, "")
	if err != nil {
		return fail(err)
	}
	hostKeyFile := filepath.Join(dir, "host_ed25519_key")
	if err := os.WriteFile(hostKeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return fail(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return fail(err)
	}
	_, userPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fail(err)
	}
	userSigner, err := ssh.NewSignerFromKey(userPriv)
	if err != nil {
		return fail(err)
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(userSigner.PublicKey()), 0o600); err != nil {
		return fail(err)
	}
	s := &sshServer{User: u.Username, Signer: userSigner, HostKey: hostSigner.PublicKey()}
	srv := startOnFreePort(func(port int) (*server, error) {
		conf := filepath.Join(dir, "sshd_config")
		err := os.WriteFile(conf, fmt.Appendf(nil, `Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
`, port, hostKeyFile, filepath.Join(dir, "sshd.pid"), authorized), 0o600)
		if err != nil {
			return nil, err
		}
		p, err := testserver.Start("sshd", exec.Command(bin, "-D", "-e", "-f", conf), filepath.Join(tmpRoot, "sshd.log"), syscall.SIGTERM, nil, hostSpawn, onStop)
		if err != nil {
			return nil, err
		}
		srv := &server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		cfg := s.clientConfig()
		err = p.WaitReady(func(ctx context.Context) error {
			c, err := ssh.Dial("tcp", srv.Addr, cfg)
			if err != nil {
				return err
			}
			return c.Close()
		})
		if err != nil {
			p.Kill()
			return nil, err
		}
		return srv, nil
	})
	s.server = *srv
	return s
}

// sshDial connects to s over a connection from rec, as an application
// plugs the library into golang.org/x/crypto/ssh, whose own Dial takes no
// dialer; the client is closed at cleanup.
func sshDial(t *testing.T, s *sshServer, rec *recorder) *ssh.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	conn, err := rec.DialContext(ctx, "tcp", s.Addr)
	require.NoError(t, err)
	c, chans, reqs, err := ssh.NewClientConn(conn, s.Addr, s.clientConfig())
	if err != nil {
		conn.Close()
	}
	require.NoError(t, err)
	client := ssh.NewClient(c, chans, reqs)
	t.Cleanup(func() { client.Close() })
	return client
}

func TestSSH(t *testing.T) {
	t.Parallel()
	s := sshd(t)
	rec := newRecorder(clientConfig)
	client := sshDial(t, s, rec)
	session, err := client.NewSession()
	require.NoError(t, err)
	t.Cleanup(func() { session.Close() })
	// SSH_CONNECTION is "client-address client-port server-address
	// server-port" as sshd sees it.
	out, err := session.Output("echo $SSH_CONNECTION")
	require.NoError(t, err)

	d := rec.only(t)
	f := strings.Fields(string(out))
	require.Len(t, f, 4, "SSH_CONNECTION %q", out)
	assert.Equal(t, strconv.Itoa(localPort(t, d.Conn)), f[1], "the session went over the dialed socket")
	assert.Equal(t, want(clientConfig), d.AtDial, "when the dialer returned")
	assertSocket(t, d.Conn, clientConfig)
}

// deadPeerSSH leaves a remote command running, its session waiting for
// output, and cuts the flow. x/crypto/ssh closes every channel: the
// session's Wait returns an *ssh.ExitMissingError ("remote command exited
// without exit status or exit signal"), and the client's Wait returns the
// read error, ETIMEDOUT.
func deadPeerSSH(t *testing.T) {
	s := sshd(t)
	rec := newRecorder(deadPeerConfig)
	client := sshDial(t, s, rec)
	session, err := client.NewSession()
	require.NoError(t, err)
	t.Cleanup(func() { session.Close() })
	d := rec.only(t)
	done, last := callAndCut(t, d.Conn, func() error { return session.Run("sleep 60") })
	t.Parallel()

	o := await(t, done)
	var missing *ssh.ExitMissingError
	assert.True(t, errors.As(o.err, &missing), "Run: want *ssh.ExitMissingError, got %T %v", o.err, o.err)
	connErr := make(chan error, 1)
	go func() { connErr <- client.Wait() }()
	select {
	case err := <-connErr:
		assert.ErrorIs(t, err, syscall.ETIMEDOUT, "the client's Wait")
		noticed(t, "x/crypto/ssh", fmt.Sprintf("Session.Run: %v; Client.Wait: %v", o.err, err), last, o.at)
	case <-time.After(queryTimeout):
		assert.Fail(t, "the client's Wait did not return")
	}
}
