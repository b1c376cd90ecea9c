package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

func TestSuggest(t *testing.T) {
	rt, err := keepalive.RetransmitTimeout()
	require.NoError(t, err)
	for _, tt := range []struct {
		idleTimeout, detect string
		want                []string
	}{
		{"350s", "30s", []string{
			"idle=15s,interval=5s,count=3,user-timeout=30s\n\nwhy:\n",
			"  - a vanished peer is noticed within 30s of silence (idle 15s + 3 unanswered probes × interval 5s); the target was 30s\n",
			"  - the path stays open: the first probe goes out after 15s of silence, and if it is lost the next after 20s, 5m30s before the idle timeout 5m50s\n",
			"  - 3 probes: 2 lost in a row do not close a healthy connection\n",
			fmt.Sprintf("  - user timeout 30s: data left unacknowledged is given up on within the same time; without it, at the first retransmission after %v of retransmitting (net.ipv4.tcp_retries2)\n", rt),
			"\ncheck it against a server: keepalive dial -config idle=15s,interval=5s,count=3,user-timeout=30s HOST:PORT\n",
		}},
		{"350s", "10m", []string{
			"idle=237s,interval=78s,count=3,user-timeout=471s\n",
			"  - a vanished peer is noticed within 7m51s of silence (idle 3m57s + 3 unanswered probes × interval 1m18s); the target was 10m0s: sooner, as the idle timeout bounds idle\n",
			"if it is lost the next after 5m15s, 35s before the idle timeout 5m50s\n",
		}},
		{"4m", "2s", []string{
			"idle=1s,interval=1s,count=1,user-timeout=2s\n",
			"  - 1 probe: a single lost probe closes a healthy connection; a longer -detect allows more\n",
		}},
	} {
		t.Run(tt.idleTimeout+" "+tt.detect, func(t *testing.T) {
			r := runArgs(context.Background(), "suggest", "-idle-timeout", tt.idleTimeout, "--detect", tt.detect)
			t.Logf("stdout:\n%s", r.stdout)
			assert.Equal(t, exitOK, r.code)
			assert.Empty(t, r.stderr)
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
			// The first line is the Config, as ParseConfig reads it.
			first, _, _ := strings.Cut(r.stdout, "\n")
			c, err := keepalive.ParseConfig(first)
			require.NoError(t, err)
			it, _ := time.ParseDuration(tt.idleTimeout)
			d, _ := time.ParseDuration(tt.detect)
			want, err := keepalive.Suggest(it, d)
			require.NoError(t, err)
			assert.Equal(t, want, c)
		})
	}
}

// TestSuggestNoUserTimeout checks that -no-user-timeout leaves the user
// timeout out, and that both forms say what the choice costs.
func TestSuggestNoUserTimeout(t *testing.T) {
	with := runArgs(context.Background(), "suggest", "-idle-timeout", "350s", "-detect", "30s")
	assert.Contains(t, with.stdout, "  - but a live peer that stops reading for longer than 30s is cut off too: for peers that may pause, -no-user-timeout\n")

	r := runArgs(context.Background(), "suggest", "-idle-timeout", "350s", "-detect", "30s", "-no-user-timeout")
	assert.Equal(t, exitOK, r.code)
	assert.Empty(t, r.stderr)
	first, _, _ := strings.Cut(r.stdout, "\n")
	assert.Equal(t, "idle=15s,interval=5s,count=3", first)
	assert.Contains(t, r.stdout, "  - no user timeout (-no-user-timeout): a peer that stops reading is never cut off, but one that vanishes with data in flight is noticed only at the first retransmission after")
	assert.NotContains(t, r.stdout, "is cut off too")
}
