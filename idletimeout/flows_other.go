//go:build !linux

package idletimeout

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"
)

// run fails: the search needs Linux's keepalive timer and TCP_INFO.
func run(ctx context.Context, s settings, start time.Time) (Result, error) {
	return Result{}, fmt.Errorf("keepalive: finding the idle timeout is not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}
