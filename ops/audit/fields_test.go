package audit_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/enforce"
)

// TestFieldsString checks that audit's and enforce's sets of fields, which
// share one String, give each field the same bit: the options a policy
// set and those an apply names read alike.
func TestFieldsString(t *testing.T) {
	for _, tt := range []struct {
		a    audit.Fields
		e    enforce.Fields
		want string
	}{
		{0, 0, "none"},
		{audit.FieldKeepAlive, enforce.FieldKeepAlive, "keepalive"},
		{audit.FieldIdle, enforce.FieldIdle, "idle"},
		{audit.FieldInterval, enforce.FieldInterval, "interval"},
		{audit.FieldCount, enforce.FieldCount, "count"},
		{audit.FieldUserTimeout, enforce.FieldUserTimeout, "user-timeout"},
		{audit.AllFields, enforce.FieldKeepAlive | enforce.FieldIdle | enforce.FieldInterval | enforce.FieldCount | enforce.FieldUserTimeout, "keepalive,idle,interval,count,user-timeout"},
	} {
		assert.Equal(t, tt.want, tt.a.String())
		assert.Equal(t, tt.want, tt.e.String())
		assert.Equal(t, uint8(tt.a), uint8(tt.e), tt.want)
	}
}
