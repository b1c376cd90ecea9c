package wine_test

import "time"

// keepaliveVals are the SIO_KEEPALIVE_VALS cases that the Windows test sets
// and holds, and what the Linux kernel must hold for each under Wine, which
// turns milliseconds into whole seconds as max(1, (ms+500)/1000): rounded
// to the nearest second, halves up. Off leaves the idle time and interval
// as they were.
var keepaliveVals = []struct {
	name               string
	on                 bool
	idleMS, intervalMS uint32
	// wantIdle and wantInterval are what TCP_KEEPIDLE and TCP_KEEPINTVL
	// must report; zero means the system default (the sysctl).
	wantIdle, wantInterval time.Duration
}{
	{name: "whole seconds", on: true, idleMS: 7000, intervalMS: 3000, wantIdle: 7 * time.Second, wantInterval: 3 * time.Second},
	{name: "one second", on: true, idleMS: 1000, intervalMS: 1000, wantIdle: time.Second, wantInterval: time.Second},
	{name: "halves round up", on: true, idleMS: 1500, intervalMS: 2500, wantIdle: 2 * time.Second, wantInterval: 3 * time.Second},
	{name: "below halves round down", on: true, idleMS: 2499, intervalMS: 1499, wantIdle: 2 * time.Second, wantInterval: time.Second},
	{name: "under a second is one", on: true, idleMS: 400, intervalMS: 1, wantIdle: time.Second, wantInterval: time.Second},
	{name: "a minute", on: true, idleMS: 60000, intervalMS: 10000, wantIdle: time.Minute, wantInterval: 10 * time.Second},
	{name: "off", on: false, idleMS: 5000, intervalMS: 6000},
}
