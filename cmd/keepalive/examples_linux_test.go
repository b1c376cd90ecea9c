package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
	// What the examples name that the test replaces: ADDR by a loopback
	// listener whose connections are closed after a moment, so that -watch
	// ends.
	stand := map[string]string{
		"localhost:5432": ln.Addr().String(),
	}
	for _, c := range commands {
		for _, ex := range c.examples {
			t.Run(ex.line, func(t *testing.T) {
				args := strings.Fields(ex.line)
				require.Equal(t, "keepalive", args[0])
				if c.name != "" {
					require.Equal(t, c.name, args[1], "an example of %s runs %s", c.prog(), c.name)
				}
				for i, a := range args {
					if v, ok := stand[a]; ok {
						args[i] = v
					}
				}
				r := runArgs(context.Background(), args[1:]...)
				t.Logf("stdout:\n%s", r.stdout)
				assert.Equal(t, exitOK, r.code)
				assert.Empty(t, r.stderr)
				assert.NotEmpty(t, r.stdout)
			})
		}
	}
}
