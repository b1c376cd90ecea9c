package keepalive_test

import (
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// These tests run on AIX, which sets Idle, Interval and Count per socket
// but has no user timeout and no readable defaults.

func TestAIXSetGet(t *testing.T) {
	c := keepalive.Config{Idle: 90 * time.Second, Interval: 7 * time.Second, Count: 4}
	for _, how := range []string{"dial", "set"} {
		d := &keepalive.Dialer{Config: c}
		if how == "set" {
			d.Config = keepalive.Config{Idle: 33 * time.Second, Interval: 11 * time.Second, Count: 2}
		}
		conn, _ := loopbackPair(t, d)
		if how == "set" {
			require.NoError(t, keepalive.Set(conn, c))
		}
		got, err := keepalive.Get(conn)
		require.NoError(t, err, how)
		assert.Equal(t, c, got, how)
		v, err := sockopts.Read(conn.(syscall.Conn))
		require.NoError(t, err, how)
		assert.Equal(t, sockopts.Values{KeepAlive: true, Idle: c.Idle, Interval: c.Interval, Count: c.Count}, v, how)

		require.NoError(t, keepalive.Disable(conn))
		got, err = keepalive.Get(conn)
		require.NoError(t, err, how)
		assert.True(t, got.Off, how)
	}
}

// TestAIXZeroLeaves checks that a zero field leaves the socket's value,
// since the defaults cannot be read.
func TestAIXZeroLeaves(t *testing.T) {
	c := keepalive.Config{Idle: 90 * time.Second, Interval: 7 * time.Second, Count: 4}
	conn, _ := loopbackPair(t, &keepalive.Dialer{Config: c})
	require.NoError(t, keepalive.Set(conn, keepalive.Config{}))
	got, err := keepalive.Get(conn)
	require.NoError(t, err)
	assert.Equal(t, c, got)
	assert.False(t, keepalive.Platform().DefaultsReadable)
	_, err = keepalive.SystemDefaults()
	assert.ErrorIs(t, err, errors.ErrUnsupported)
}

func TestAIXUserTimeout(t *testing.T) {
	err := keepalive.Config{UserTimeout: time.Minute}.Validate()
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	assert.ErrorContains(t, err, "AIX has no socket option that bounds how long sent data may stay unacknowledged")
}
