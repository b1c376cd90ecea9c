package replicate

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRegisteredDead checks which registered replicas waitServerID takes
// for dead streams of this package: only those whose Run is known to have
// ended, here or in a process of this host that has exited.
func TestRegisteredDead(t *testing.T) {
	host, err := os.Hostname()
	require.NoError(t, err)
	exited := exec.Command("true")
	require.NoError(t, exited.Run())
	live := replicaName()
	liveRuns.Store(live, true)
	t.Cleanup(func() { liveRuns.Delete(live) })
	tests := []struct {
		name string
		dead bool
	}{
		{live, false},
		{replicaName(), true}, // named, never run
		{fmt.Sprintf("%s/%d/1", host, exited.Process.Pid), true},
		{fmt.Sprintf("%s/%d/1", host, os.Getppid()), false},
		{fmt.Sprintf("elsewhere/%d/1", exited.Process.Pid), false},
		{host, false}, // go-mysql's own registration
		{host + "/x/1", false},
		{"", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.dead, registeredDead(tt.name), "registeredDead(%q)", tt.name)
	}
}
