package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestExamples runs every example that -h shows, as written but for the
// stand-ins below.
func TestExamples(t *testing.T) {
	ln, accepted := loopback(t)
	go func() {
		for c := range accepted {
			time.AfterFunc(200*time.Millisecond, func() { c.Close() })
		}
	}()
	// A connection this process holds, for the examples that name a
	// process and a port.
	held, _ := auditPair(t, keepalive.Config{Idle: time.Hour})
	prom := filepath.Join(t.TempDir(), "keepalive.prom")
	holder := startPathServer(t, onLoopback, false)
	// The enforce examples' cgroup: one of the test's own, when it may
	// make one.
	cgroup := exampleCgroup(t)
	// What the examples name that the test replaces: ADDR by a loopback
	// listener whose connections are closed after a moment, so that -watch
	// ends; the server of path by one on loopback that holds every
	// connection, and its database URL by one of a PostgreSQL server
	// started for the example, where app logs in; pid 1234 and port 5432 by this process and its
	// connection; the exporter's address by an ephemeral port; files by
	// files of the test's own; the cgroup of enforce by a cgroup of the
	// test's own.
	stand := map[string]string{
		"localhost:5432":                        ln.Addr().String(),
		"redis.internal:6379":                   holder.addr,
		"1234":                                  fmt.Sprint(os.Getpid()),
		"5432":                                  fmt.Sprint(portOf(held)),
		"127.0.0.1:9977":                        "127.0.0.1:0",
		":9977":                                 "127.0.0.1:0",
		"/var/lib/node_exporter/keepalive.prom": prom,
		"web.yml":                               writeWebConfig(t, "", ""),
		"/sys/fs/cgroup/system.slice/app.service": cgroup,
	}
	// The commands that serve until interrupted: they are interrupted
	// once they have served a while.
	serves := map[*command]bool{exporterCommand: true}
	// The commands that run until -max: given -max 2s after the
	// example's flags, which the last -max overrides, and run at the same
	// time.
	quick := map[*command][]string{pathCommand: {"-max", "2s"}}
	for _, c := range commands {
		for _, ex := range c.examples {
			t.Run(ex.line, func(t *testing.T) {
				if quick[c] != nil {
					t.Parallel()
				}
				if c == enforceCommand && cgroup == "" {
					skipOutsideCI(t, "keepalive enforce needs root")
				}
				args := append(strings.Fields(ex.line), quick[c]...)
				require.Equal(t, "keepalive", args[0])
				if c.name != "" {
					require.Equal(t, c.name, args[1], "an example of %s runs %s", c.prog(), c.name)
				}
				wrote := ""
				for i, a := range args {
					if v, ok := stand[a]; ok {
						args[i] = v
					}
					if strings.HasPrefix(a, "postgres://") {
						args[i] = examplePostgres(t, a)
					}
					if a == "-prom" {
						wrote = args[i+1]
					}
				}
				ctx := context.Background()
				if serves[c] {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Second)
					defer cancel()
				}
				r := runArgs(ctx, args[1:]...)
				t.Logf("stdout:\n%s", r.stdout)
				assert.Equal(t, exitOK, r.code)
				assert.Empty(t, r.stderr)
				if wrote != "" {
					b, err := os.ReadFile(stand[wrote])
					require.NoError(t, err)
					assert.Contains(t, string(b), "keepalive_connections{")
				} else {
					assert.NotEmpty(t, r.stdout)
				}
			})
		}
	}
}
