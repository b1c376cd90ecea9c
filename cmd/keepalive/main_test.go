package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

// runResult is what one run of the command gave.
type runResult struct {
	code           int
	stdout, stderr string
}

func runArgs(ctx context.Context, args ...string) runResult {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return runResult{code, stdout.String(), stderr.String()}
}

// squeeze collapses each run of spaces and tabs, which tabwriter varies, to
// one space.
func squeeze(s string) string {
	return regexp.MustCompile(`[ \t]+`).ReplaceAllString(s, " ")
}

func TestRunHelp(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"-h"}, []string{"usage: keepalive [flags]", "keepalive dial [flags] ADDR", "keepalive sysctl", "keepalive suggest", "-config text", "-user-timeout duration"}},
		{[]string{"help"}, []string{"usage: keepalive [flags]", "With no command"}},
		{[]string{"dial", "-h"}, []string{"usage: keepalive dial [flags] ADDR", "-watch", "-timeout duration", "-config text", "ETIMEDOUT", "Exit status"}},
		{[]string{"help", "dial"}, []string{"usage: keepalive dial [flags] ADDR"}},
		{[]string{"sysctl", "--help"}, []string{"usage: keepalive sysctl [flags]", "/etc/sysctl.d/", "-config text"}},
		{[]string{"suggest", "-h"}, []string{"usage: keepalive suggest -idle-timeout D -detect D", "-idle-timeout duration", "-detect duration", "AWS NLB 350s"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runArgs(context.Background(), tt.args...)
			assert.Equal(t, 0, r.code)
			assert.Empty(t, r.stderr)
			for _, w := range tt.want {
				assert.Contains(t, r.stdout, w)
			}
		})
	}
}

// TestRunUsageErrors checks that a bad command line or Config exits with
// status 2 and says why on stderr, and that nothing goes to stdout.
func TestRunUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string // in stderr
	}{
		{[]string{"bogus"}, []string{`keepalive: unknown command "bogus"`, "usage: keepalive [flags]"}},
		{[]string{"-nope"}, []string{"keepalive: flag provided but not defined: -nope", "usage: keepalive [flags]"}},
		{[]string{"-idle", "30s", "extra"}, []string{`keepalive: unknown command "extra"`}},
		{[]string{"-count", "200"}, []string{"keepalive: Count 200 is out of range 1..127"}},
		{[]string{"-idle", "1.5s"}, []string{"keepalive: Idle 1.5s is not a whole number of seconds"}},
		{[]string{"-config", "idel=5s"}, []string{`keepalive: invalid value "idel=5s" for flag -config: keepalive: unknown key "idel" (valid keys: idle, interval, count, user-timeout, and the word off)`}},
		{[]string{"-config", "count=3,count=4"}, []string{`keepalive: duplicate key "count"`}},
		{[]string{"dial"}, []string{"keepalive dial: missing ADDR", "usage: keepalive dial"}},
		{[]string{"dial", "127.0.0.1:1", "127.0.0.1:2"}, []string{`keepalive dial: unexpected argument "127.0.0.1:2" after ADDR`}},
		{[]string{"dial", "localhost"}, []string{`keepalive dial: ADDR "localhost" is not host:port`}},
		{[]string{"dial", "-watch=maybe", "127.0.0.1:1"}, []string{`keepalive dial: invalid boolean value "maybe" for -watch`}},
		{[]string{"dial", "127.0.0.1:1", "-user-timeout", "1.5ms"}, []string{"keepalive: UserTimeout 1.5ms is not a whole number of milliseconds"}},
		{[]string{"dial", "-config", "count=0.5", "127.0.0.1:1"}, []string{`invalid value "count=0.5" for flag -config: keepalive: count value "0.5" is not a whole number`}},
		{[]string{"sysctl", "extra"}, []string{`keepalive sysctl: unexpected argument "extra"`}},
		{[]string{"sysctl", "-interval", "-1s"}, []string{"keepalive: Interval -1s is out of range 1s..32767s"}},
		{[]string{"suggest"}, []string{"keepalive suggest: missing -idle-timeout", "usage: keepalive suggest"}},
		{[]string{"suggest", "-idle-timeout", "350s"}, []string{"keepalive suggest: missing -detect"}},
		{[]string{"suggest", "-idle-timeout", "350s", "-detect", "30"}, []string{`keepalive suggest: invalid value "30" for flag -detect: parse error`}},
		{[]string{"suggest", "-idle-timeout", "2s", "-detect", "30s"}, []string{"keepalive: idle timeout 2s is too short"}},
		{[]string{"suggest", "-idle-timeout", "350s", "-detect", "1s"}, []string{"keepalive: cannot notice a dead peer within 1s: the shortest Config (idle 1s, interval 1s, count 1) takes 2s"}},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runArgs(context.Background(), tt.args...)
			assert.Equal(t, 2, r.code)
			assert.Empty(t, r.stdout)
			for _, w := range tt.want {
				assert.Contains(t, r.stderr, w)
			}
		})
	}
}
