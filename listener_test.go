//go:build !js && !plan9 && !wasip1

package keepalive_test

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/keepalive-go/keepalive"
)

// The tests of ListenConfig, on every platform that has socket options.

// TestListenConfigBaseKeepAlive checks that the Config wins over the base
// listen config's KeepAlive and KeepAliveConfig: with KeepAlive 0 the
// standard library writes 15 s / 15 s / 9 after every accept.
func TestListenConfigBaseKeepAlive(t *testing.T) {
	sys := systemValues(t)
	bases := []struct {
		name string
		lc   *net.ListenConfig
	}{
		{"nil", nil},
		{"KeepAlive 0", &net.ListenConfig{}},
		{"KeepAlive 30s", &net.ListenConfig{KeepAlive: 30 * time.Second}},
		{"KeepAliveConfig 20s 20s 3", &net.ListenConfig{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: 20 * time.Second, Interval: 20 * time.Second, Count: 3}}},
	}
	for _, b := range bases {
		for _, tt := range trapShapes(t) {
			t.Run(b.name+"/"+tt.name, func(t *testing.T) {
				var before net.ListenConfig
				if b.lc != nil {
					before = *b.lc
				}
				ln := listen(t, &keepalive.ListenConfig{NetListenConfig: b.lc, Config: tt.c})
				_, accepted := pair(t, ln, plainDial)
				assertHolds(t, accepted, tt.c.WithDefaults(sys), "accepted")
				if b.lc != nil {
					assert.Equal(t, before, *b.lc, "NetListenConfig modified")
				}
			})
		}
	}
}

// TestListenConfigPerAccept checks that ListenConfig returns the standard
// library's listener where accepted sockets inherit the listening socket's
// options (Capabilities.AcceptInherits), and one that applies the Config
// to each accepted connection elsewhere: either way every accepted
// connection holds the Config.
func TestListenConfigPerAccept(t *testing.T) {
	c := fullConfig(t)
	want := c.WithDefaults(systemValues(t))
	ln := listen(t, &keepalive.ListenConfig{Config: c})
	_, std := ln.(*net.TCPListener)
	assert.Equal(t, keepalive.Platform().AcceptInherits, std, "Listen returned %T", ln)
	for range 3 {
		_, accepted := pair(t, ln, plainDial)
		assertHolds(t, accepted, want, "accepted")
	}
}
