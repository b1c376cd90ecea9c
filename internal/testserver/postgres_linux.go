package testserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Postgres is a PostgreSQL data folder made by initdb, with the binaries
// that made it.
type Postgres struct {
	Bin  string              // the folder of initdb, pg_ctl and postgres
	Cred *syscall.Credential // whom to run them as; nil for the test's user
	Dir  string              // owned by Cred: the data folder, the socket, the log
	Data string
}

// InitPostgres runs initdb in a new folder under root whose name starts
// with prefix. Every local connection is trusted.
func InitPostgres(root, prefix string) (*Postgres, error) {
	initdb, err := LookPath("initdb", "/usr/lib/postgresql/*/bin/initdb")
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(initdb); err == nil {
		initdb = real
	}
	pg := &Postgres{Bin: filepath.Dir(initdb)}
	// initdb, pg_ctl and postgres refuse to run as root: as root, run them
	// as the postgres user that Debian's package creates.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, Unavailable{"PostgreSQL refuses to run as root and there is no postgres user to run it as: " + err.Error()}
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		pg.Cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	if pg.Dir, err = os.MkdirTemp(root, prefix); err != nil {
		return nil, err
	}
	if pg.Cred != nil {
		if err := os.Chown(pg.Dir, int(pg.Cred.Uid), int(pg.Cred.Gid)); err != nil {
			return nil, err
		}
	}
	pg.Data = filepath.Join(pg.Dir, "data")
	if err := Run(pg.Command("initdb", "-D", pg.Data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C")); err != nil {
		return nil, err
	}
	return pg, nil
}

// Command returns a command that runs one of the cluster's binaries as its
// owner.
func (pg *Postgres) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(pg.Bin, name), args...)
	cmd.Dir = pg.Dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: pg.Cred}
	return cmd
}

// Trust lets clients from cidr connect without a password; initdb trusts
// only loopback.
func (pg *Postgres) Trust(cidr string) error {
	f, err := os.OpenFile(filepath.Join(pg.Data, "pg_hba.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "host all all %s trust\n", cidr)
	return errors.Join(err, f.Close())
}

// Start starts postgres listening on addr:port, through spawn, registers its
// stop (pg_ctl stop -m fast) with register, and waits until ready succeeds.
// Each of settings, such as "authentication_timeout=3s", is given with -c
// after the ones Start gives, which it overrides.
//
// postgres is started directly rather than through pg_ctl start, which would
// detach it from the test binary and let it outlive a crash.
func (pg *Postgres) Start(addr string, port int, spawn SpawnFunc, register func(func()), ready func(ctx context.Context) error, settings ...string) error {
	args := []string{"-D", pg.Data, "-p", strconv.Itoa(port), "-k", pg.Dir,
		"-c", "listen_addresses=" + addr, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=30"}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	cmd := pg.Command("postgres", args...)
	stop := func() error {
		return Run(pg.Command("pg_ctl", "stop", "-D", pg.Data, "-m", "fast", "-w", "-t", "15"))
	}
	p, err := Start("postgres", cmd, pg.Dir+".log", syscall.SIGQUIT, stop, spawn, register)
	if err != nil {
		return err
	}
	if err := p.WaitReady(ready); err != nil {
		p.Kill()
		return err
	}
	return nil
}

// Configure appends settings to the cluster's postgresql.conf.
func (pg *Postgres) Configure(lines ...string) error {
	f, err := os.OpenFile(filepath.Join(pg.Data, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(f, strings.Join(lines, "\n"))
	return errors.Join(err, f.Close())
}
