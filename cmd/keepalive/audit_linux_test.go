package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/internal/sockopts"
)

// auditPair opens a connection on loopback whose dialed end carries c and
// whose accepted end has keepalive off; both are closed at cleanup.
func auditPair(t *testing.T, c keepalive.Config) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, ch := loopback(t)
	d, err := (&keepalive.Dialer{Config: c}).Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	a := <-ch
	require.NoError(t, a.(*net.TCPConn).SetKeepAlive(false))
	return d.(*net.TCPConn), a.(*net.TCPConn)
}

func portOf(c net.Conn) int { return c.LocalAddr().(*net.TCPAddr).Port }

// TestAuditJSON checks audit -json against getsockopt on both ends of a
// connection this test opened.
func TestAuditJSON(t *testing.T) {
	c := keepalive.Config{Idle: 45 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: time.Minute}
	dialed, accepted := auditPair(t, c)
	r := runArgs(context.Background(), "audit", "-json", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)), "-idle-timeout", "30s", "-detect", "1m")
	require.Equal(t, exitOK, r.code, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	got := map[string]map[string]any{}
	for _, l := range lines {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		got[m["local"].(string)] = m
	}
	for _, end := range []*net.TCPConn{dialed, accepted} {
		m := got[end.LocalAddr().String()]
		require.NotNil(t, m, "audit -json lists %v", end.LocalAddr())
		k, err := sockopts.Read(end)
		require.NoError(t, err)
		assert.Equal(t, float64(os.Getpid()), m["pid"])
		assert.Equal(t, end.RemoteAddr().String(), m["remote"])
		assert.Equal(t, "socket", m["source"])
		assert.Equal(t, k.KeepAlive, m["enabled"])
		assert.Equal(t, k.Idle.String(), m["idle"])
		assert.Equal(t, k.Interval.String(), m["interval"])
		assert.Equal(t, float64(k.Count), m["count"])
		assert.Equal(t, k.UserTimeout.String(), m["user_timeout"])
		for _, key := range []string{"command", "state", "verdict", "idle_timeout_verdict", "detect_verdict"} {
			assert.Contains(t, m, key)
		}
	}
	assert.Equal(t, "at-risk", got[dialed.LocalAddr().String()]["verdict"], "idle 45s against an idle timeout of 30s")
	assert.Equal(t, "off", got[accepted.LocalAddr().String()]["verdict"])
}

// TestAuditTable checks the table: one group for this process, the values
// in columns, the summary.
func TestAuditTable(t *testing.T) {
	dialed, _ := auditPair(t, keepalive.Config{Idle: 20 * time.Second, Interval: 4 * time.Second, Count: 2})
	r := runArgs(context.Background(), "audit", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)), "-idle-timeout", "350s", "-detect", "30s")
	require.Equal(t, exitOK, r.code, r.stderr)
	out := squeeze(r.stdout)
	for _, w := range []string{
		fmt.Sprintf("(pid %d): 2 connections", os.Getpid()),
		"FD LOCAL REMOTE STATE KEEPALIVE IDLE INTERVAL COUNT USER TIMEOUT DETECTS IN SOURCE VERDICT",
		fmt.Sprintf("%v %v established on 20s 4s 2 none 28s socket ok", dialed.LocalAddr(), dialed.RemoteAddr()),
		fmt.Sprintf("%v %v established off", dialed.RemoteAddr(), dialed.LocalAddr()),
		"never socket off",
		"2 connections: 1 ok, 1 off",
		"checked against an idle timeout of 5m50s and detection within 30s",
	} {
		assert.Contains(t, out, w)
	}
	assert.Empty(t, r.stderr, "no progress drawn when stderr is not a terminal")
}

// TestApplyCmd sets a Config on this test's own connection through the
// command and checks it with getsockopt.
func TestApplyCmd(t *testing.T) {
	dialed, accepted := auditPair(t, keepalive.Config{Idle: time.Hour})
	r := runArgs(context.Background(), "apply", "-pid", fmt.Sprint(os.Getpid()), "-port", fmt.Sprint(portOf(dialed)),
		"-config", "idle=25s,interval=5s,count=3", "-user-timeout", "40s", "-idle-timeout", "30s")
	require.Equal(t, exitOK, r.code, r.stderr)
	want := sockopts.Values{KeepAlive: true, Idle: 25 * time.Second, Interval: 5 * time.Second, Count: 3, UserTimeout: 40 * time.Second}
	for _, end := range []*net.TCPConn{dialed, accepted} {
		k, err := sockopts.Read(end)
		require.NoError(t, err)
		assert.Equal(t, want, k, "%v after apply", end.LocalAddr())
	}
	out := squeeze(r.stdout)
	assert.Contains(t, out, "set idle=25s,interval=5s,count=3,user-timeout=40s on 2 of 2 connections")
	assert.Contains(t, out, "on idle=3600s")
	assert.Contains(t, out, "on idle=25s,interval=5s,count=3,user-timeout=40s ok")
}

func TestAuditApplyUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{[]string{"audit", "-remote", "not-an-address"}, exitUsage, `-remote "not-an-address" is neither an address nor a prefix`},
		{[]string{"audit", "-port", "70000"}, exitUsage, "-port 70000 is not a port"},
		{[]string{"audit", "-idle-timeout", "-1s"}, exitUsage, "must not be negative"},
		{[]string{"audit", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"apply", "-config", "idle=10s"}, exitUsage, "missing -pid"},
		{[]string{"apply", "-pid", "1"}, exitUsage, "missing -config"},
		{[]string{"apply", "-pid", "1", "-idle", "1500ms"}, exitUsage, "keepalive: Idle 1.5s is not a whole number of seconds"},
		{[]string{"apply", "-pid", "999999999", "-idle", "10s"}, exitFail, "no process 999999999"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runArgs(context.Background(), tt.args...)
			assert.Equal(t, tt.code, r.code)
			assert.Contains(t, r.stderr, tt.want)
			assert.Empty(t, r.stdout)
		})
	}
}
