package keepalive_test

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// TestSuggest checks Suggest's choices for the idle timeouts of common
// middleboxes, at Linux's limits.
func TestSuggest(t *testing.T) {
	const (
		awsNLB      = 350 * time.Second
		azureLB     = 4 * time.Minute
		gcpCloudNAT = 20 * time.Minute
	)
	for _, tt := range []struct {
		name        string
		idleTimeout time.Duration
		detect      time.Duration
		want        string // the exact Config, when not empty
	}{
		{"AWS NLB, 30s", awsNLB, 30 * time.Second, "idle=15s,interval=5s,count=3,user-timeout=30s"},
		{"AWS NLB, 2m", awsNLB, 2 * time.Minute, "idle=60s,interval=20s,count=3,user-timeout=120s"},
		{"AWS NLB, 5m", awsNLB, 5 * time.Minute, "idle=150s,interval=50s,count=3,user-timeout=300s"},
		// The idle timeout, not the target, bounds Idle: Idle + Interval is
		// 350s less 35s, with Interval a quarter of it.
		{"AWS NLB, 10m", awsNLB, 10 * time.Minute, "idle=237s,interval=78s,count=3,user-timeout=471s"},
		{"AWS NLB, 1h", awsNLB, time.Hour, "idle=237s,interval=78s,count=3,user-timeout=471s"},
		{"AWS NLB, 5s", awsNLB, 5 * time.Second, "idle=2s,interval=1s,count=3,user-timeout=5s"},
		{"AWS NLB, 2s", awsNLB, 2 * time.Second, "idle=1s,interval=1s,count=1,user-timeout=2s"},
		{"Azure LB, 10s", azureLB, 10 * time.Second, "idle=5s,interval=1s,count=3,user-timeout=8s"},
		{"Azure LB, 1m", azureLB, time.Minute, "idle=30s,interval=10s,count=3,user-timeout=60s"},
		{"Azure LB, 4m", azureLB, 4 * time.Minute, "idle=120s,interval=40s,count=3,user-timeout=240s"},
		{"Azure LB, 15m", azureLB, 15 * time.Minute, "idle=162s,interval=54s,count=3,user-timeout=324s"},
		{"GCP Cloud NAT, 30s", gcpCloudNAT, 30 * time.Second, "idle=15s,interval=5s,count=3,user-timeout=30s"},
		{"GCP Cloud NAT, 15m", gcpCloudNAT, 15 * time.Minute, "idle=450s,interval=150s,count=3,user-timeout=900s"},
		{"GCP Cloud NAT, 1h", gcpCloudNAT, time.Hour, "idle=810s,interval=270s,count=3,user-timeout=1620s"},
		// Fractions of a second are rounded down.
		{"GCP Cloud NAT, 61.9s", gcpCloudNAT, 61900 * time.Millisecond, "idle=30s,interval=10s,count=3,user-timeout=60s"},
		{"shortest idle timeout", 3 * time.Second, time.Minute, "idle=1s,interval=1s,count=3,user-timeout=4s"},
		{"kernel limits", math.MaxInt64, math.MaxInt64, "idle=32767s,interval=32767s,count=3,user-timeout=131068s"},
		{"AWS NLB, 17s", awsNLB, 17 * time.Second, ""},
		{"Azure LB, 4m1s", azureLB, 241 * time.Second, ""},
		{"GCP Cloud NAT, 20m", gcpCloudNAT, gcpCloudNAT, ""},
		{"GCP Cloud NAT, 1d", gcpCloudNAT, 24 * time.Hour, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := keepalive.Suggest(tt.idleTimeout, tt.detect)
			require.NoError(t, err)
			assert.Empty(t, suggestedProblem(c, tt.idleTimeout, tt.detect))
			if tt.want != "" {
				assert.Equal(t, tt.want, c.String())
			}
		})
	}
}
