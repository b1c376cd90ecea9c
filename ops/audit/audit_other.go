//go:build !linux

package audit

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

func audit(ctx context.Context, o Options) (*Report, error) { return nil, unsupported() }

func apply(ctx context.Context, f Filter, ch Change) ([]Result, error) {
	return nil, unsupported()
}

func unsupported() error {
	return fmt.Errorf("audit: sock_diag and pidfd_getfd are Linux's: not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}
