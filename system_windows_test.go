package keepalive_test

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/windows/registry"

	"github.com/keepalive-go/keepalive"
)

// TestWindowsSystemDefaults checks SystemDefaults against the registry
// values KeepAliveTime and KeepAliveInterval, read here, or Windows'
// documented defaults (2 h, 1 s) where they are absent, as in a new Wine
// prefix, and the fixed 10 probes.
func TestWindowsSystemDefaults(t *testing.T) {
	want := windowsDefaults
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SYSTEM\CurrentControlSet\Services\Tcpip\Parameters`, registry.QUERY_VALUE)
	if err == nil {
		t.Cleanup(func() { k.Close() })
		for _, v := range []struct {
			name string
			d    *time.Duration
		}{{"KeepAliveTime", &want.Idle}, {"KeepAliveInterval", &want.Interval}} {
			ms, _, err := k.GetIntegerValue(v.name)
			if errors.Is(err, registry.ErrNotExist) {
				continue
			}
			require.NoError(t, err, v.name)
			t.Logf("the registry sets %s %d ms", v.name, ms)
			*v.d = time.Duration(ms) * time.Millisecond
		}
	} else {
		require.ErrorIs(t, err, registry.ErrNotExist)
	}
	got, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	assert.Equal(t, want, got)
	dt, err := keepalive.Config{}.DetectionTime()
	require.NoError(t, err)
	assert.Equal(t, want.Idle+10*want.Interval, dt, "DetectionTime of the zero Config")
}
