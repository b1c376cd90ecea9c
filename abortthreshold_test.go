package keepalive_test

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
)

// The keepalive abort threshold model of illumos and Oracle Solaris, whose
// arithmetic is shared code and runs here.

func TestCheckThresholdPair(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	derives := "the system derives the one of Interval and Count left unset from the other and its keepalive " +
		"abort threshold (TCP_KEEPALIVE_ABORT_THRESHOLD), so the socket would not hold the Config; set Interval and Count together, or neither"
	tests := []struct {
		name        string
		c           keepalive.Config
		field       string // the field at fault, empty for none
		want        string // the error text
		unsupported bool
	}{
		{name: "neither", c: keepalive.Config{Idle: time.Minute}},
		{name: "both", c: keepalive.Config{Interval: 15 * time.Second, Count: 9}},
		{name: "the largest count at 60s", c: keepalive.Config{Interval: time.Minute, Count: 35791}},
		{name: "the largest count at 1s", c: keepalive.Config{Interval: time.Second, Count: 2147483}},
		{
			name: "Interval alone", c: keepalive.Config{Interval: 15 * time.Second}, field: "Count", unsupported: true,
			want: "keepalive: Count 0 with Interval 15s is not supported on " + platform + ": " + derives,
		},
		{
			name: "Count alone", c: keepalive.Config{Count: 9, Idle: time.Minute}, field: "Interval", unsupported: true,
			want: "keepalive: Interval 0 with Count 9 is not supported on " + platform + ": " + derives,
		},
		{
			name: "a count past the threshold at 60s", c: keepalive.Config{Interval: time.Minute, Count: 35792}, field: "Count",
			want: "keepalive: Count 35792 is out of range 1..35791 with Interval 60s: Interval*Count is the keepalive abort threshold, at most 2147483647ms",
		},
		{
			name: "a count past the threshold at 1s", c: keepalive.Config{Interval: time.Second, Count: 2147484}, field: "Count",
			want: "keepalive: Count 2147484 is out of range 1..2147483 with Interval 1s: Interval*Count is the keepalive abort threshold, at most 2147483647ms",
		},
		{
			name: "the largest interval Oracle documents", c: keepalive.Config{Interval: 864000 * time.Second, Count: 3}, field: "Count",
			want: "keepalive: Count 3 is out of range 1..2 with Interval 864000s: Interval*Count is the keepalive abort threshold, at most 2147483647ms",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := keepalive.CheckThresholdPair(tt.c)
			if tt.field == "" {
				assert.Nil(t, fe)
				return
			}
			require.NotNil(t, fe)
			assert.Equal(t, tt.field, fe.Field)
			assert.EqualError(t, fe, tt.want)
			assert.Equal(t, tt.unsupported, errors.Is(fe, errors.ErrUnsupported))
			assert.Equal(t, !tt.unsupported, errors.Is(fe, keepalive.ErrOutOfRange))
		})
	}
}

func TestThresholdPair(t *testing.T) {
	const eight = 8 * time.Minute // illumos's _keepalive_abort_interval
	tests := []struct {
		name            string
		interval        time.Duration // as TCP_KEEPINTVL reads, whole seconds
		count           int64
		abort, sysAbort time.Duration
		wantInterval    time.Duration
		wantCount       int64
		wantErr         string // a part of the error, empty for none
	}{
		{name: "a new socket", abort: eight, sysAbort: eight},
		{name: "a new socket with another system threshold", abort: time.Minute, sysAbort: time.Minute},
		{name: "both set", interval: 15 * time.Second, count: 9, abort: 135 * time.Second, wantInterval: 15 * time.Second, wantCount: 9},
		{name: "the largest pair", interval: time.Minute, count: 35791, abort: 35791 * time.Minute, wantInterval: time.Minute, wantCount: 35791},
		{
			// 480000/15000 = 32 probes: the derived count keeps the
			// threshold, so the pair tells the truth.
			name: "Interval alone, dividing the threshold", interval: 15 * time.Second, count: 32, abort: eight,
			wantInterval: 15 * time.Second, wantCount: 32,
		},
		{
			name: "neither, with a threshold other code set", abort: 135 * time.Second, sysAbort: eight,
			wantErr: "reading Interval and Count back is not supported on " + runtime.GOOS + "/" + runtime.GOARCH +
				": the socket sets neither TCP_KEEPINTVL nor TCP_KEEPCNT, but its keepalive abort threshold (TCP_KEEPALIVE_ABORT_THRESHOLD) is 135000ms, not the system's 480000ms",
		},
		{
			// 480000/7000 = 68 probes of 7 s: 476 s, not the 480 s
			// the connection waits.
			name: "Interval alone, not dividing the threshold", interval: 7 * time.Second, count: 68, abort: eight,
			wantErr: "TCP_KEEPINTVL 7s times TCP_KEEPCNT 68 is not the keepalive abort threshold (TCP_KEEPALIVE_ABORT_THRESHOLD) 480000ms",
		},
		{
			// 480000/9 = 53333 ms, read back truncated to 53 s.
			name: "Count alone", interval: 53 * time.Second, count: 9, abort: eight,
			wantErr: "TCP_KEEPINTVL 53s times TCP_KEEPCNT 9 is not",
		},
		{
			// 480000/3 = 160 s, clamped to the 60 s retransmission
			// timeout maximum.
			name: "Count alone, clamped", interval: time.Minute, count: 3, abort: eight,
			wantErr: "TCP_KEEPINTVL 60s times TCP_KEEPCNT 3 is not",
		},
		{name: "Interval under a zero threshold", interval: 15 * time.Second, abort: 0, wantErr: "TCP_KEEPINTVL 15s times TCP_KEEPCNT 0"},
		{name: "a count without an interval", count: 9, abort: eight, wantErr: "TCP_KEEPINTVL 0s times TCP_KEEPCNT 9"},
		{name: "a negative count", interval: time.Second, count: -1, abort: -time.Second, wantErr: "TCP_KEEPCNT -1"},
		{name: "a product past int64", interval: time.Minute, count: math.MaxInt64, abort: eight, wantErr: "TCP_KEEPCNT 9223372036854775807"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			interval, count, err := keepalive.ThresholdPair(tt.interval, tt.count, tt.abort, tt.sysAbort)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				assert.ErrorIs(t, err, errors.ErrUnsupported)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.wantInterval, interval)
			assert.Equal(t, tt.wantCount, count)
		})
	}
}

func TestBackoffDetection(t *testing.T) {
	const never = time.Duration(math.MaxInt64) // a silent peer is never noticed
	tests := []struct {
		idle, abort, rtoMax, want time.Duration
	}{
		{2 * time.Hour, 8 * time.Minute, time.Minute, 2*time.Hour + 9*time.Minute},
		{time.Second, 8 * time.Minute, 2 * time.Hour, 2*time.Hour + 8*time.Minute + time.Second},
		{time.Minute, 0, time.Minute, never},
		{never - time.Minute, 8 * time.Minute, time.Minute, never},
		{never - 9*time.Minute, 8 * time.Minute, time.Minute, never},
		{never - 9*time.Minute - 1, 8 * time.Minute, time.Minute, never - 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.idle, "+", tt.abort, "+", tt.rtoMax), func(t *testing.T) {
			assert.Equal(t, tt.want, keepalive.BackoffDetection(tt.idle, tt.abort, tt.rtoMax))
		})
	}
}
