package testserver

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
)

// MariaDB is a MariaDB data folder made by mariadb-install-db, with
// root@localhost and no password.
type MariaDB struct {
	Mariadbd string
	Dir      string   // the data folder, the socket, the pid file
	Common   []string // the options both install and server take
}

// InitMariaDB runs mariadb-install-db in a new folder under root.
func InitMariaDB(root, name string) (*MariaDB, error) {
	install, err := LookPath("mariadb-install-db", "/usr/bin/mysql_install_db")
	if err != nil {
		return nil, err
	}
	mariadbd, err := LookPath("mariadbd", "/usr/sbin/mariadbd", "/usr/sbin/mysqld")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(root, name+"-")
	if err != nil {
		return nil, err
	}
	// Small InnoDB files: the server holds no tables of its own.
	common := []string{"--datadir=" + filepath.Join(dir, "data"), "--innodb-buffer-pool-size=16M", "--innodb-log-file-size=8M"}
	if os.Geteuid() == 0 {
		common = append(common, "--user=root") // else mariadbd refuses root
	}
	// Its own temporary folder: installs running at once in /tmp name
	// their temporary tables alike and break each other.
	args := append([]string{"--no-defaults", "--auth-root-authentication-method=normal", "--skip-test-db", "--tmpdir=" + dir}, common...)
	if err := Run(exec.Command(install, args...)); err != nil {
		return nil, err
	}
	return &MariaDB{Mariadbd: mariadbd, Dir: dir, Common: common}, nil
}

// Socket is the server's Unix-domain socket, which reaches it from any
// network namespace.
func (m *MariaDB) Socket() string { return filepath.Join(m.Dir, "mysqld.sock") }

// Start starts mariadbd listening on addr:port with the extra options,
// through spawn, registers its stop with register, and waits until ready
// succeeds.
func (m *MariaDB) Start(addr string, port int, spawn SpawnFunc, register func(func()), ready func(ctx context.Context) error, extra ...string) error {
	args := append([]string{"--no-defaults"}, m.Common...)
	args = append(args, "--port="+strconv.Itoa(port), "--bind-address="+addr,
		"--socket="+m.Socket(), "--pid-file="+filepath.Join(m.Dir, "mysqld.pid"),
		"--tmpdir="+m.Dir, "--skip-name-resolve")
	args = append(args, extra...)
	p, err := Start("mariadbd", exec.Command(m.Mariadbd, args...), m.Dir+".log", syscall.SIGKILL, nil, spawn, register)
	if err != nil {
		return err
	}
	if err := p.WaitReady(ready); err != nil {
		p.Kill()
		return err
	}
	return nil
}
