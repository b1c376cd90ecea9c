//go:build linux || windows

package keepalive_test

import (
	"fmt"
	"strings"
	"time"

	"github.com/keepalive-go/keepalive"
)

// The Windows tests (the *_windows_test.go files) hold each socket they
// configure with wine.Hold, tagged with where it comes from and the Config
// in force, so that TestWindowsUnderWine can read from Linux what the
// kernel holds for it. This file is what both sides share.

// wineConfigs are the Configs the Windows tests apply through every API.
// Each is valid where Windows sets Idle and Interval with
// SIO_KEEPALIVE_VALS, as under Wine: whole seconds, no Count, no
// UserTimeout. None is Off with both times zero: that writes only
// SO_KEEPALIVE, and leaves the times a new Wine socket has, Linux's.
var wineConfigs = []keepalive.Config{
	{},
	{Idle: 30 * time.Second, Interval: 5 * time.Second},
	{Idle: 45 * time.Second},
	{Interval: 7 * time.Second},
	{Idle: time.Second, Interval: time.Second},
	{Idle: 32767 * time.Second, Interval: 32767 * time.Second},
	{Off: true, Idle: 20 * time.Second, Interval: 4 * time.Second},
}

// wineSources name where a held socket comes from: the API that
// configured it and which end of the connection it is.
var wineSources = []string{
	"Set/dialed", "Set/accepted",
	"Disable/dialed", "Disable/accepted",
	"SetAfterDisable/dialed", "SetAfterDisable/accepted",
	"DialContext/dialed", "DialContextHook/dialed", "ConfiguredNetDialer/dialed",
	"ListenConfig/accepted",
	"Control/dialed", "Control/listener",
}

// wineTag returns the tag of a socket from source configured with c.
func wineTag(source string, c keepalive.Config) string {
	return fmt.Sprintf("%s [%s]", source, c)
}

// parseWineTag splits a tag that wineTag made.
func parseWineTag(tag string) (source string, c keepalive.Config, err error) {
	source, rest, ok := strings.Cut(tag, " [")
	text, ok2 := strings.CutSuffix(rest, "]")
	if !ok || !ok2 {
		return "", keepalive.Config{}, fmt.Errorf("tag %q is not \"source [config]\"", tag)
	}
	c, err = keepalive.ParseConfig(text)
	return source, c, err
}

// The Windows defaults when the registry sets none, as in a new Wine
// prefix: KeepAliveTime 2 h, KeepAliveInterval 1 s, 10 probes.
var windowsDefaults = keepalive.Config{Idle: 2 * time.Hour, Interval: time.Second, Count: 10}
