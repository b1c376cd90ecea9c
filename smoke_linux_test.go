package keepalive_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keepalive-go/keepalive"
)

func TestSmoke(t *testing.T) {
	c := keepalive.Config{Idle: 11 * time.Second, Interval: 12 * time.Second, Count: 3, UserTimeout: 4 * time.Second}
	ln := listen(t, &keepalive.ListenConfig{Config: c})
	d := &keepalive.Dialer{Config: c}
	dialed, accepted := pair(t, ln, d.DialContext)
	assert.Equal(t, expect(t, c), readKernel(t, dialed))
	assert.Equal(t, expect(t, c), readKernel(t, accepted))
}
