//go:build !linux && !solaris && !aix

package keepalive

import (
	"errors"
	"time"
)

// This platform has no per-socket keepalive options that this package
// drives.

const why = "the platform has no per-socket keepalive options"

var supports = [numOptions]Support{
	optKeepAlive:   {whySet: why, whyGet: why},
	optIdle:        {whySet: why, whyGet: why},
	optInterval:    {whySet: why, whyGet: why},
	optCount:       {whySet: why, whyGet: why},
	optUserTimeout: {whySet: why, whyGet: why},
}

func support(o option) Support { return supports[o] }

const (
	acceptInherits   = false
	defaultsReadable = false
)

func setOption(fd uintptr, o option, c, sys Config) error { return errors.ErrUnsupported }

func getOption(fd uintptr, o option) (int64, error) { return 0, errors.ErrUnsupported }

func checkCombination(Config) *FieldError { return nil }

func checkTCP(fd uintptr) error { return errors.ErrUnsupported }

func systemDefaults() (Config, error) {
	return Config{}, unsupported("reading the system defaults", why)
}

var _ = time.Second
