package keepalive_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// These tests run on illumos and Oracle Solaris, where Interval and Count
// stand for one keepalive abort threshold (abortthreshold.go).

func TestSunSystemDefaults(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	assert.Positive(t, sys.Idle)
	assert.Positive(t, sys.UserTimeout, "a user timeout is always in force")
	assert.Zero(t, sys.Interval, "a new socket sets no interval")
	assert.Zero(t, sys.Count, "a new socket sets no count")

	c, _ := loopbackPair(t, &keepalive.Dialer{})
	got, err := keepalive.Get(c)
	require.NoError(t, err)
	assert.Equal(t, sys, got)

	abort := newSocketAbort(t)
	assert.Greater(t, detectionTime(t, keepalive.Config{}, sys), sys.Idle+abort, "probes back off until the threshold, then up to one timer later")
}

func TestSunSetGet(t *testing.T) {
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	tests := []struct {
		name string
		c    keepalive.Config
		pair bool // sets Interval and Count
	}{
		{name: "zero"},
		{name: "idle", c: keepalive.Config{Idle: 90 * time.Second}},
		{name: "idle in milliseconds", c: keepalive.Config{Idle: 12500 * time.Millisecond}},
		{name: "user timeout", c: keepalive.Config{UserTimeout: 30*time.Second + 5*time.Millisecond}},
		{name: "off", c: keepalive.Config{Off: true, Idle: time.Minute}},
		{name: "pair", c: keepalive.Config{Idle: time.Minute, Interval: 15 * time.Second, Count: 9}, pair: true},
		{name: "pair and user timeout", c: keepalive.Config{Idle: time.Minute, Interval: 20 * time.Second, Count: 3, UserTimeout: 2 * time.Minute}, pair: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.pair && !keepalive.Platform().Interval.Settable {
				err := tt.c.Validate()
				assert.ErrorIs(t, err, errors.ErrUnsupported, "before Solaris 11.4 Interval cannot be set")
				return
			}
			want := tt.c
			if want.Interval == 0 {
				want.Interval, want.Count = 0, 0
			}
			for _, how := range []string{"dial", "set"} {
				var conn net.Conn
				if how == "dial" {
					conn, _ = loopbackPair(t, &keepalive.Dialer{Config: tt.c})
				} else {
					// A socket holding other values first: Set must
					// put every zero field's default back.
					other := keepalive.Config{Idle: 33 * time.Second, UserTimeout: 44 * time.Second}
					if keepalive.Platform().Interval.Settable {
						other.Interval, other.Count = 11*time.Second, 7
					}
					conn, _ = loopbackPair(t, &keepalive.Dialer{Config: other})
					require.NoError(t, keepalive.Set(conn, tt.c))
				}
				got, err := keepalive.Get(conn)
				require.NoError(t, err, how)
				assert.Equal(t, want.WithDefaults(sys), got, how)
				v, err := sockopts.Read(conn.(syscall.Conn))
				require.NoError(t, err, how)
				assert.Equal(t, kernelOf(t, tt.c.WithDefaults(sys)), v, how)
			}
		})
	}
}

func TestSunValidatePair(t *testing.T) {
	want := "set Interval and Count together, or neither"
	if !keepalive.Platform().Interval.Settable {
		want = "Solaris before 11.4 has neither TCP_KEEPINTVL nor TCP_KEEPCNT"
	}
	for _, c := range []keepalive.Config{{Interval: 15 * time.Second}, {Count: 9}} {
		err := c.Validate()
		var fe *keepalive.FieldError
		require.ErrorAs(t, err, &fe, "%v", c)
		assert.ErrorIs(t, err, errors.ErrUnsupported)
		assert.ErrorContains(t, err, want)
	}
}

// TestSunForeignState checks that Get refuses a state other code made, a
// keepalive abort threshold that is not the system's on a socket that sets
// neither Interval nor Count (what Go's net package leaves on Solaris before
// 11.4), and that Set puts it right.
func TestSunForeignState(t *testing.T) {
	conn, _ := loopbackPair(t, &keepalive.Dialer{})
	rc, err := conn.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	var serr error
	require.NoError(t, rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_KEEPALIVE_ABORT_THRESHOLD, 135000)
	}))
	require.NoError(t, serr)

	_, err = keepalive.Get(conn)
	assert.ErrorIs(t, err, errors.ErrUnsupported)
	assert.ErrorContains(t, err, "is 135000ms, not the system's")

	require.NoError(t, keepalive.Set(conn, keepalive.Config{}))
	if !keepalive.Platform().Interval.Settable {
		// Before Solaris 11.4 Set cannot write the threshold back.
		_, err = keepalive.Get(conn)
		assert.ErrorIs(t, err, errors.ErrUnsupported)
		return
	}
	sys, err := keepalive.SystemDefaults()
	require.NoError(t, err)
	got, err := keepalive.Get(conn)
	require.NoError(t, err)
	assert.Equal(t, sys, got)
}
