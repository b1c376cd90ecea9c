package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/keepalive-go/keepalive"
)

// defaults is the Config a command uses for what its flags do not give:
// below every common middlebox idle timeout (AWS NLB 350 s), and a dead
// peer noticed within two minutes. The default user timeout is not a value
// but a rule, idle + interval × count of the Config in the end.
var defaults = keepalive.Config{Idle: 60 * time.Second, Interval: 10 * time.Second, Count: 5}

// derivedUserTimeout is how -h names the default user timeout.
const derivedUserTimeout = "idle + interval × count"

// configHelp is the paragraph -h prints for commands that take a Config.
var configHelp = fmt.Sprintf(`A Config is given as text, -config idle=30s,count=4 (the form
keepalive.ParseConfig reads), or field by field with -idle, -interval,
-count and -user-timeout. The fields given win and the rest keep their
defaults: a field's own flag wins over -config, and -config over the
default, %s, with a user timeout of %s
wherever the system has one. So -config idle=30s,count=4 -interval 7s is
%s. 0 leaves a field at the system default (no user timeout, for
-user-timeout), and -config "" is the zero Config: every field the system
default. -off, or "off" in -config, turns keepalive off.`, defaults, derivedUserTimeout, withDefaults(keepalive.Config{Idle: 30 * time.Second, Interval: 7 * time.Second, Count: 4}))

// withDefaults writes c with the default user timeout, as text.
func withDefaults(c keepalive.Config) string {
	c, _ = withDefaultUserTimeout(c)
	return c.String()
}

// field is one field of a Config: its key in the text form, which is also
// its flag's name.
type field struct {
	key   string
	usage string
	get   func(keepalive.Config) string
	copy  func(dst *keepalive.Config, src keepalive.Config)
}

var fields = [...]field{
	{"idle", "idle time before the first probe (TCP_KEEPIDLE), a `duration` in whole seconds; 0 for the system default",
		func(c keepalive.Config) string { return c.Idle.String() },
		func(dst *keepalive.Config, src keepalive.Config) { dst.Idle = src.Idle }},
	{"interval", "time between probes (TCP_KEEPINTVL), a `duration` in whole seconds; 0 for the system default",
		func(c keepalive.Config) string { return c.Interval.String() },
		func(dst *keepalive.Config, src keepalive.Config) { dst.Interval = src.Interval }},
	{"count", "unanswered probes before the connection is dropped (TCP_KEEPCNT), a whole `number`; 0 for the system default",
		func(c keepalive.Config) string { return fmt.Sprint(c.Count) },
		func(dst *keepalive.Config, src keepalive.Config) { dst.Count = src.Count }},
	{"user-timeout", "longest time sent data may stay unacknowledged (TCP_USER_TIMEOUT), a `duration` in whole milliseconds; 0 for no user timeout",
		func(c keepalive.Config) string { return c.UserTimeout.String() },
		func(dst *keepalive.Config, src keepalive.Config) { dst.UserTimeout = src.UserTimeout }},
}

const userTimeoutField = 3 // the index of user-timeout in fields

// configFlags are the flags that give a Config: -config and one flag per
// field.
type configFlags struct {
	text  keepalive.Config   // from -config
	named [len(fields)]bool  // the fields -config names
	own   [len(fields)]*bool // the fields given by their own flags
	vals  keepalive.Config   // from the per-field flags
	off   *bool              // -off
	fs    *flag.FlagSet      // where they are defined, which knows what was given
}

func addConfigFlags(fs *flag.FlagSet) *configFlags {
	f := &configFlags{fs: fs}
	fs.Var(&configValue{f}, "config", "the Config as `text`: idle=D,interval=D,count=N,user-timeout=D, each key optional; see above")
	for i, fl := range fields {
		given := false
		f.own[i] = &given
		fs.Var(&fieldValue{fl: fl, dst: &f.vals, given: &given}, fl.key, fl.usage)
		def := fl.get(defaults)
		if i == userTimeoutField {
			def = derivedUserTimeout
		}
		fs.Lookup(fl.key).DefValue = def
	}
	f.off = boolFlag(fs, "off", "turn keepalive off (SO_KEEPALIVE 0), as \"off\" in -config does; the other fields are still set, for when it is turned on again")
	return f
}

// offGiven reports whether -off was given, true or false.
func (f *configFlags) offGiven() bool {
	given := false
	f.fs.Visit(func(fl *flag.Flag) { given = given || fl.Name == "off" })
	return given
}

// config returns the Config the flags give: the defaults, with the fields
// -config names replaced, then those given by their own flags; the user
// timeout, if neither gives it, idle + interval × count where the system has
// one.
func (f *configFlags) config() (keepalive.Config, error) {
	c := f.text // which carries whatever -config sets beyond the four fields
	for i, fl := range fields {
		if !f.named[i] {
			fl.copy(&c, defaults)
		}
		if *f.own[i] {
			fl.copy(&c, f.vals)
		}
	}
	if *f.off {
		c.Off = true
	}
	if !f.named[userTimeoutField] && !*f.own[userTimeoutField] {
		var err error
		if c, err = withDefaultUserTimeout(c); err != nil {
			return c, err
		}
	}
	return c, badConfig(c.Validate())
}

// withDefaultUserTimeout sets c's UserTimeout to Idle + Interval*Count, with
// the system's value for each zero field, where the system has a user
// timeout; elsewhere it leaves it zero.
func withDefaultUserTimeout(c keepalive.Config) (keepalive.Config, error) {
	if !keepalive.Platform().UserTimeout.Settable {
		return c, nil
	}
	withUT, err := c.WithUserTimeout()
	if err != nil {
		return c, usagef("the default user timeout, %s, needs the system defaults: %s; give -user-timeout", derivedUserTimeout, message(err))
	}
	c = withUT
	if err := (keepalive.Config{UserTimeout: c.UserTimeout}).Validate(); err != nil {
		return c, usagef("the default user timeout, %s = %v, cannot be set: %s; give -user-timeout", derivedUserTimeout, c.UserTimeout, message(err))
	}
	return c, nil
}

// configValue is -config.
type configValue struct{ f *configFlags }

func (v *configValue) form() string {
	return "want key=value pairs such as idle=60s,count=5"
}

func (v *configValue) Set(s string) error {
	c, err := keepalive.ParseConfig(s)
	if err != nil {
		return errors.New(message(err))
	}
	v.f.text = c
	v.f.named = [len(fields)]bool{}
	if strings.TrimSpace(s) == "" {
		// The zero Config: every field the system default.
		for i := range v.f.named {
			v.f.named[i] = true
		}
		return nil
	}
	for _, item := range strings.Split(s, ",") {
		key, _, _ := strings.Cut(item, "=")
		for i, fl := range fields {
			if strings.TrimSpace(key) == fl.key {
				v.f.named[i] = true
			}
		}
	}
	return nil
}

func (v *configValue) String() string {
	if v == nil || v.f == nil {
		return ""
	}
	return v.f.text.String()
}

// fieldValue is the flag of one field. Its value is parsed as the text form
// key=value, so that a flag and -config read a value the same way, and
// validated alone.
type fieldValue struct {
	fl    field
	dst   *keepalive.Config
	given *bool
}

func (v *fieldValue) form() string {
	if v.fl.key == "count" {
		return "want a whole number such as 5"
	}
	return "want a duration such as 60s"
}

func (v *fieldValue) Set(s string) error {
	if strings.Contains(s, ",") {
		return fmt.Errorf("%s: one value, not a list", v.form())
	}
	c, err := keepalive.ParseConfig(v.fl.key + "=" + s)
	if err != nil {
		return errors.New(message(err))
	}
	v.fl.copy(v.dst, c)
	*v.given = true
	return nil
}

func (v *fieldValue) String() string {
	if v == nil || v.dst == nil {
		return ""
	}
	return v.fl.get(*v.dst)
}
