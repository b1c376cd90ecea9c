//go:build !linux

package enforce

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

func enforce(ctx context.Context, o Options) (*Result, error) { return nil, unsupported() }

func list(ctx context.Context, bpffs string) ([]Policy, error) { return nil, unsupported() }

func remove(ctx context.Context, bpffs, cgroup string) (*Policy, error) {
	return nil, unsupported()
}

func loadedObjects() (Objects, error) { return Objects{}, unsupported() }

func unsupported() error {
	return fmt.Errorf("enforce: cgroups and BPF are Linux's: not supported on %s/%s: %w", runtime.GOOS, runtime.GOARCH, errors.ErrUnsupported)
}
