package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string // in standard error
	}{
		{"no command", nil, exitUsage, "usage: replicate postgres"},
		{"unknown command", []string{"mysql"}, exitUsage, `unknown command "mysql"`},
		{"help", []string{"postgres", "-h"}, exitOK, "-publication name"},
		{"no publication", []string{"postgres", "host=db"}, exitUsage, "usage: replicate postgres"},
		{"no connection string", []string{"postgres", "-publication", "p"}, exitUsage, "usage: replicate postgres"},
		{"bad keepalive value", []string{"postgres", "-publication", "p", "host=db keepalives_idle=30s"}, exitUsage,
			`invalid integer value "30s" for connection option "keepalives_idle"`},
		{"bad -keepalive", []string{"postgres", "-publication", "p", "-keepalive", "idle=1.5s", "host=db"}, exitUsage, "Idle 1.5s"},
		{"mariadb help", []string{"mariadb", "-h"}, exitOK, "-server-id"},
		{"postgres help: one consumer", []string{"postgres", "-h"}, exitOK, "so a second instance is a standby"},
		{"mariadb help: one consumer", []string{"mariadb", "-h"}, exitOK, "a second instance is a standby"},
		{"mariadb bad -from", []string{"mariadb", "-from", "binlog.000001"}, exitUsage, "want file:offset"},
		{"mariadb argument", []string{"mariadb", "extra"}, exitUsage, "usage: replicate mariadb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			assert.Equal(t, tt.code, code, "exit status; stderr:\n%s", stderr.String())
			assert.Contains(t, stderr.String(), tt.want)
			assert.Empty(t, stdout.String())
		})
	}
}
