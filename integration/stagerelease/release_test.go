package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRelease enacts the release on a copy of this tree (RELEASING.md)
// and uses the modules as a new user would once they are tagged: from an
// empty folder, outside any workspace, through a module proxy (a file
// proxy here) that serves the library, ops and the command at the version
// they require of each other, and knows nothing else of this tree.
//
// The go command installs and builds with -trimpath, which changes nothing
// but the file names recorded in the binaries: the staged modules come
// from a module cache of their own, and without it every package would be
// compiled afresh at each run instead of coming from the build cache.
func TestRelease(t *testing.T) {
	s, err := makeStage(filepath.Join("..", ".."), t.TempDir())
	require.NoError(t, err)
	t.Logf("release %s: %s", s.version, strings.Join(s.env, " "))

	goCmd := func(t *testing.T, dir string, extraEnv []string, args ...string) string {
		t.Helper()
		cmd := exec.Command("go", args...)
		cmd.Dir = dir
		cmd.Env = append(append(os.Environ(), s.env...), extraEnv...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			var msg strings.Builder
			for line := range strings.Lines(string(out) + stderr.String()) {
				if !strings.HasPrefix(line, "go: downloading ") {
					msg.WriteString(line)
				}
			}
			t.Fatalf("go %s in %s: %v\n%s", strings.Join(args, " "), dir, err, msg.String())
		}
		return string(out)
	}

	// Each release step adds to go.sum the lines for the modules tagged
	// before it, and changes nothing else: every module, as its tag will
	// have it, is tidy.
	t.Run("tidy", func(t *testing.T) {
		for _, m := range released {
			out := goCmd(t, filepath.Join(s.tree, m.dir), nil, "mod", "tidy", "-diff")
			assert.Empty(t, out, "go mod tidy -diff in %s", m.dir)
		}
		assert.Len(t, s.added["ops"], 2, "ops: go.sum lines added for the library")
		assert.Len(t, s.added["cmd/keepalive"], 4, "cmd/keepalive: go.sum lines added for the library and ops")
	})

	// The README's install command.
	t.Run("go install", func(t *testing.T) {
		dir := t.TempDir()
		bin := filepath.Join(dir, "bin")
		env := []string{"GOBIN=" + bin, "GOFLAGS=-modcacherw -mod=mod -trimpath"}
		goCmd(t, dir, env, "install", released[2].path+"@latest")

		// The binary holds the modules at the release's version, with the
		// hashes the release steps wrote into go.sum.
		info := goCmd(t, dir, nil, "version", "-m", filepath.Join(bin, "keepalive"))
		for _, m := range released {
			kind := "dep"
			if m.path == released[2].path {
				kind = "mod"
			}
			sum := strings.Fields(s.sums[m.path][0])[2]
			assert.Contains(t, info, "\t"+kind+"\t"+m.path+"\t"+s.version+"\t"+sum+"\n")
		}

		out, err := exec.Command(filepath.Join(bin, "keepalive"), "suggest", "-idle-timeout", "350s", "-detect", "30s").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.True(t, strings.HasPrefix(string(out), "idle=15s,interval=5s,count=3,user-timeout=30s\n"), "keepalive suggest printed:\n%s", out)
	})

	// An outside module requires ops (and, through it, the library) and
	// builds a program that audits its own connection with ops/audit.
	t.Run("import ops/audit", func(t *testing.T) {
		dir := t.TempDir()
		env := []string{"GOFLAGS=-modcacherw -mod=mod -trimpath"}
		require.NoError(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(auditProgram), 0o644))
		goCmd(t, dir, env, "mod", "init", "example.com/outside")
		goCmd(t, dir, env, "get", released[1].path)
		goCmd(t, dir, env, "build", "-o", "outside", ".")

		list := goCmd(t, dir, env, "list", "-m", released[0].path, released[1].path)
		assert.Equal(t, released[0].path+" "+s.version+"\n"+released[1].path+" "+s.version+"\n", list)
		sums, err := os.ReadFile(filepath.Join(dir, "go.sum"))
		require.NoError(t, err)
		for _, m := range released[:2] {
			for _, line := range s.sums[m.path] {
				assert.Contains(t, string(sums), line+"\n", "the outside module's go.sum")
			}
		}

		if runtime.GOOS != "linux" {
			return // ops/audit reads the host through Linux's sock_diag
		}
		out, err := exec.Command(filepath.Join(dir, "outside")).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "idle=42s,interval=7s,count=3\n", string(out), "what audit read from the program's own dialed socket")
	})
}

// auditProgram dials its own listener through the library's Dialer and
// prints the values ops/audit reads from the dialed socket.
const auditProgram = `package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/ops/audit"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run() error {
	ctx := context.Background()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	d := &keepalive.Dialer{Config: keepalive.Config{Idle: 42 * time.Second, Interval: 7 * time.Second, Count: 3}}
	c, err := d.DialContext(ctx, "tcp", ln.Addr().String())
	if err != nil {
		return err
	}
	defer c.Close()
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	r, err := audit.Audit(ctx, audit.Options{Filter: audit.Filter{PID: os.Getpid(), Port: port}})
	if err != nil {
		return err
	}
	for _, conn := range r.Conns {
		if conn.Remote.Port() == port {
			fmt.Println(conn.Config)
			return nil
		}
	}
	return fmt.Errorf("audit did not find the dialed connection among %d", len(r.Conns))
}
`
