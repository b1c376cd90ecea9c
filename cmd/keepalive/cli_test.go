package main

import (
	"bytes"
	"context"
	"flag"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/keepalive-go/keepalive"
	"github.com/keepalive-go/keepalive/idletimeout"
)

// runResult is what one run of the command gave.
type runResult struct {
	code           int
	stdout, stderr string
}

func runArgs(ctx context.Context, args ...string) runResult {
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &env{stdout: &stdout, stderr: &stderr})
	return runResult{code, stdout.String(), stderr.String()}
}

// squeeze collapses each run of spaces and tabs, which tabwriter varies, to
// one space.
func squeeze(s string) string {
	return regexp.MustCompile(`[ \t]+`).ReplaceAllString(s, " ")
}

// lib is the library's error for what a flag gave, as the command words
// it: without the "keepalive: " prefix.
func lib(err error) string {
	if err == nil {
		return "<no error>"
	}
	return strings.TrimPrefix(err.Error(), "keepalive: ")
}

func parseErr(s string) error {
	_, err := keepalive.ParseConfig(s)
	return err
}

// usageTail is what follows the message of every usage error of the
// command prog.
var usageTail = map[string]string{
	"keepalive":          "usage: keepalive [flags]\nRun \"keepalive -h\" for the flags and examples.\n",
	"keepalive dial":     "usage: keepalive dial [flags] ADDR\nRun \"keepalive dial -h\" for the flags and examples.\n",
	"keepalive sysctl":   "usage: keepalive sysctl [flags]\nRun \"keepalive sysctl -h\" for the flags and examples.\n",
	"keepalive path":     "usage: keepalive path [flags] HOST:PORT|URL\nRun \"keepalive path -h\" for the flags and examples.\n",
	"keepalive suggest":  "usage: keepalive suggest -idle-timeout D -detect D\nRun \"keepalive suggest -h\" for the flags and examples.\n",
	"keepalive help":     "usage: keepalive help [COMMAND]\nRun \"keepalive help -h\" for the flags and examples.\n",
	"keepalive audit":    "usage: keepalive audit [flags]\nRun \"keepalive audit -h\" for the flags and examples.\n",
	"keepalive apply":    "usage: keepalive apply -pid P [flags]\nRun \"keepalive apply -h\" for the flags and examples.\n",
	"keepalive exporter": "usage: keepalive exporter [flags]\nRun \"keepalive exporter -h\" for the flags and examples.\n",
}

// TestUsageErrors checks that a bad command line or Config exits with
// status 2, prints nothing on stdout, and on stderr exactly the message
// (which names the flag and what it takes), then the usage line.
func TestUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		prog string
		msg  string
	}{
		{[]string{"-nope"}, "keepalive", "flag provided but not defined: -nope"},
		{[]string{"-idle", "30s", "extra"}, "keepalive", `unknown command "extra"`},
		{[]string{"-idle", "30s", "dial"}, "keepalive", `the command "dial" must come first: keepalive dial [flags]`},
		{[]string{"-count", "200"}, "keepalive", `invalid value "200" for flag -count: ` + lib(keepalive.Config{Count: 200}.Validate())},
		{[]string{"-count", "-1"}, "keepalive", `invalid value "-1" for flag -count: ` + lib(keepalive.Config{Count: -1}.Validate())},
		{[]string{"-count", "five"}, "keepalive", `invalid value "five" for flag -count: ` + lib(parseErr("count=five"))},
		{[]string{"-idle", "1.5s"}, "keepalive", `invalid value "1.5s" for flag -idle: ` + lib(keepalive.Config{Idle: 1500 * time.Millisecond}.Validate())},
		{[]string{"-idle", "5"}, "keepalive", `invalid value "5" for flag -idle: ` + lib(parseErr("idle=5"))},
		{[]string{"-idle"}, "keepalive", "flag needs an argument: -idle (want a duration such as 60s)"},
		{[]string{"-count"}, "keepalive", "flag needs an argument: -count (want a whole number such as 5)"},
		{[]string{"-config"}, "keepalive", "flag needs an argument: -config (want key=value pairs such as idle=60s,count=5)"},
		{[]string{"-idle", "5s,count=3"}, "keepalive", `invalid value "5s,count=3" for flag -idle: want a duration such as 60s: one value, not a list`},
		{[]string{"-interval", "-1s"}, "keepalive", `invalid value "-1s" for flag -interval: ` + lib(keepalive.Config{Interval: -time.Second}.Validate())},
		{[]string{"-config", "idel=5s"}, "keepalive", `invalid value "idel=5s" for flag -config: ` + lib(parseErr("idel=5s"))},
		{[]string{"-config", "count=3,count=4"}, "keepalive", `invalid value "count=3,count=4" for flag -config: ` + lib(parseErr("count=3,count=4"))},
		{[]string{"dial"}, "keepalive dial", "missing ADDR"},
		{[]string{"dial", "127.0.0.1:1", "127.0.0.1:2"}, "keepalive dial", `unexpected argument "127.0.0.1:2" after ADDR`},
		{[]string{"dial", "localhost"}, "keepalive dial", `ADDR "localhost" is not host:port: address localhost: missing port in address`},
		{[]string{"dial", "-watch=maybe", "127.0.0.1:1"}, "keepalive dial", `invalid boolean value "maybe" for -watch: want true or false`},
		{[]string{"dial", "-timeout", "10", "127.0.0.1:1"}, "keepalive dial", `invalid value "10" for flag -timeout: want a duration such as 10s, or 0 for no limit (time: missing unit in duration "10")`},
		{[]string{"dial", "-timeout", "-1s", "127.0.0.1:1"}, "keepalive dial", `invalid value "-1s" for flag -timeout: want a duration such as 10s, or 0 for no limit`},
		{[]string{"dial", "-timeout"}, "keepalive dial", `flag needs an argument: -timeout (want a duration such as 10s, or 0 for no limit)`},
		{[]string{"dial", "-config", "count=0.5", "127.0.0.1:1"}, "keepalive dial", `invalid value "count=0.5" for flag -config: ` + lib(parseErr("count=0.5"))},
		{[]string{"sysctl", "extra"}, "keepalive sysctl", `unexpected argument "extra"`},
		{[]string{"sysctl", "-interval", "1.5s"}, "keepalive sysctl", `invalid value "1.5s" for flag -interval: ` + lib(keepalive.Config{Interval: 1500 * time.Millisecond}.Validate())},
		{[]string{"path"}, "keepalive path", "missing HOST:PORT or URL"},
		{[]string{"path", "127.0.0.1:1", "127.0.0.1:2"}, "keepalive path", `unexpected argument "127.0.0.1:2" after HOST:PORT or URL`},
		{[]string{"path", "localhost"}, "keepalive path", `HOST:PORT "localhost" is not host:port: address localhost: missing port in address`},
		{[]string{"path", "localhost:"}, "keepalive path", `HOST:PORT "localhost:" has no port`},
		{[]string{"path", ":5432"}, "keepalive path", `HOST:PORT ":5432" has no host`},
		{[]string{"path", "-max", "1s", "127.0.0.1:1"}, "keepalive path", `invalid value "1s" for flag -max: ` + lib(planErr(idletimeout.Options{Max: time.Second}))},
		{[]string{"path", "-max", "90.5s", "127.0.0.1:1"}, "keepalive path", `invalid value "90.5s" for flag -max: ` + lib(planErr(idletimeout.Options{Max: 90500 * time.Millisecond}))},
		{[]string{"path", "-max", "40000s", "127.0.0.1:1"}, "keepalive path", `invalid value "40000s" for flag -max: ` + lib(planErr(idletimeout.Options{Max: 40000 * time.Second}))},
		{[]string{"path", "-max", "0", "127.0.0.1:1"}, "keepalive path", `invalid value "0" for flag -max: want a duration such as 10m or 2h`},
		{[]string{"path", "-max", "10", "127.0.0.1:1"}, "keepalive path", `invalid value "10" for flag -max: want a duration such as 10m or 2h (time: missing unit in duration "10")`},
		{[]string{"path", "-max"}, "keepalive path", `flag needs an argument: -max (want a duration such as 10m or 2h)`},
		{[]string{"path", "-flows", "3", "127.0.0.1:1"}, "keepalive path", `invalid value "3" for flag -flows: ` + lib(planErr(idletimeout.Options{Flows: 3}))},
		{[]string{"path", "-flows", "many", "127.0.0.1:1"}, "keepalive path", `invalid value "many" for flag -flows: want a whole number such as 50, or 0 for as many as one pass needs`},
		{[]string{"path", "-flows"}, "keepalive path", `flag needs an argument: -flows (want a whole number such as 50, or 0 for as many as one pass needs)`},
		{[]string{"path", "-interval", "500ms", "127.0.0.1:1"}, "keepalive path", `invalid value "500ms" for flag -interval: ` + lib(planErr(idletimeout.Options{Interval: 500 * time.Millisecond}))},
		{[]string{"path", "-count", "0", "127.0.0.1:1"}, "keepalive path", `invalid value "0" for flag -count: want a whole number such as 2`},
		{[]string{"path", "-count", "128", "127.0.0.1:1"}, "keepalive path", `invalid value "128" for flag -count: ` + lib(planErr(idletimeout.Options{Count: 128}))},
		{[]string{"path", "-timeout", "0", "127.0.0.1:1"}, "keepalive path", `invalid value "0" for flag -timeout: want a duration such as 10s`},
		{[]string{"path", "-timeout", "-1s", "127.0.0.1:1"}, "keepalive path", `invalid value "-1s" for flag -timeout: want a duration such as 10s`},
		{[]string{"path", "-detect", "1s", "127.0.0.1:1"}, "keepalive path", `invalid value "1s" for flag -detect: ` + lib(suggestErr(time.Hour, time.Second))},
		{[]string{"path", "-json=maybe", "127.0.0.1:1"}, "keepalive path", `invalid boolean value "maybe" for -json: want true or false`},
		{[]string{"suggest"}, "keepalive suggest", "missing -idle-timeout"},
		{[]string{"suggest", "-idle-timeout", "350s"}, "keepalive suggest", "missing -detect"},
		{[]string{"suggest", "-idle-timeout", "350s", "-detect", "30s", "extra"}, "keepalive suggest", `unexpected argument "extra"`},
		{[]string{"suggest", "-idle-timeout", "350", "-detect", "30s"}, "keepalive suggest", `invalid value "350" for flag -idle-timeout: want a duration such as 350s or 4m (time: missing unit in duration "350")`},
		{[]string{"suggest", "-idle-timeout", "350s", "-detect", "30"}, "keepalive suggest", `invalid value "30" for flag -detect: want a duration such as 30s or 2m (time: missing unit in duration "30")`},
		{[]string{"suggest", "-idle-timeout", "0", "-detect", "30s"}, "keepalive suggest", `invalid value "0" for flag -idle-timeout: want a duration such as 350s or 4m`},
		{[]string{"suggest", "-idle-timeout", "2s", "-detect", "30s"}, "keepalive suggest", lib(suggestErr(2*time.Second, 30*time.Second))},
		{[]string{"suggest", "-idle-timeout", "350s", "-detect", "1s"}, "keepalive suggest", lib(suggestErr(350*time.Second, time.Second))},
		{[]string{"audit", "extra"}, "keepalive audit", `unexpected argument "extra"`},
		{[]string{"audit", "-remote", "not-an-address"}, "keepalive audit", `invalid value "not-an-address" for flag -remote: want an address such as 10.1.2.3 or a prefix such as 10.0.0.0/8`},
		{[]string{"audit", "-remote", "fe80::1%eth0"}, "keepalive audit", `invalid value "fe80::1%eth0" for flag -remote: want an address such as 10.1.2.3 or a prefix such as 10.0.0.0/8`},
		{[]string{"audit", "-remote"}, "keepalive audit", `flag needs an argument: -remote (want an address such as 10.1.2.3 or a prefix such as 10.0.0.0/8)`},
		{[]string{"audit", "-port", "70000"}, "keepalive audit", `invalid value "70000" for flag -port: want a port number from 1 to 65535`},
		{[]string{"audit", "-port", "0"}, "keepalive audit", `invalid value "0" for flag -port: want a port number from 1 to 65535`},
		{[]string{"audit", "-pid", "-3"}, "keepalive audit", `invalid value "-3" for flag -pid: want a process id such as 1234`},
		{[]string{"audit", "-pid"}, "keepalive audit", `flag needs an argument: -pid (want a process id such as 1234)`},
		{[]string{"audit", "-idle-timeout", "-1s"}, "keepalive audit", `invalid value "-1s" for flag -idle-timeout: want a duration such as 350s or 4m, or 0 for not asking`},
		{[]string{"audit", "-detect", "2"}, "keepalive audit", `invalid value "2" for flag -detect: want a duration such as 30s or 2m, or 0 for not asking (time: missing unit in duration "2")`},
		{[]string{"audit", "-json", "-prom", "x.prom"}, "keepalive audit", "-json and -prom: choose one"},
		{[]string{"audit", "-per-connection"}, "keepalive audit", "-per-connection is for -prom"},
		{[]string{"audit", "-prom"}, "keepalive audit", "flag needs an argument: -prom (want the path of a file)"},
		{[]string{"apply", "-config", "idle=10s"}, "keepalive apply", "missing -pid"},
		{[]string{"apply", "-pid", "1"}, "keepalive apply", "missing -config (or -idle, -interval, -count, -user-timeout, -off): say what to set"},
		{[]string{"apply", "-pid", "1", "-idle", "1500ms"}, "keepalive apply", `invalid value "1500ms" for flag -idle: ` + lib(keepalive.Config{Idle: 1500 * time.Millisecond}.Validate())},
		{[]string{"apply", "-pid", "1", "-idle", "10s", "extra"}, "keepalive apply", `unexpected argument "extra"`},
		{[]string{"exporter", "extra"}, "keepalive exporter", `unexpected argument "extra"`},
		{[]string{"exporter", "-listen", "localhost"}, "keepalive exporter", `-listen "localhost" is not host:port: address localhost: missing port in address`},
		{[]string{"exporter", "-web-config", "/nonexistent/web.yml"}, "keepalive exporter", "-web-config /nonexistent/web.yml: open /nonexistent/web.yml: no such file or directory"},
		{[]string{"exporter", "-timeout", "-1s"}, "keepalive exporter", `invalid value "-1s" for flag -timeout: want a duration such as 10s, or 0 for no limit`},
		{[]string{"help", "bogus"}, "keepalive help", `unknown command "bogus"`},
		{[]string{"help", "dial", "sysctl"}, "keepalive help", `unexpected argument "sysctl" after COMMAND`},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runArgs(context.Background(), tt.args...)
			assert.Equal(t, exitUsage, r.code)
			assert.Empty(t, r.stdout)
			assert.Equal(t, tt.prog+": "+tt.msg+"\n"+usageTail[tt.prog], r.stderr)
		})
	}
}

func planErr(o idletimeout.Options) error {
	_, _, err := idletimeout.Plan(o)
	return err
}

func suggestErr(idleTimeout, detect time.Duration) error {
	_, err := keepalive.Suggest(idleTimeout, detect)
	return err
}

// TestUnknownCommand checks that an unknown command is named, with the list
// of commands after it.
func TestUnknownCommand(t *testing.T) {
	r := runArgs(context.Background(), "bogus", "-idle", "1s")
	assert.Equal(t, exitUsage, r.code)
	assert.Empty(t, r.stdout)
	var usage bytes.Buffer
	printUsage(&usage)
	assert.Equal(t, "keepalive: unknown command \"bogus\"\n\n"+usage.String(), r.stderr)
	assert.True(t, strings.HasPrefix(usage.String(), "usage: keepalive [flags]  "), usage.String())
}

// TestHelp checks -h of every command in the table, and help COMMAND: the
// usage line, the examples, every flag, the exit statuses, on stdout with
// status 0.
func TestHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{
			append(strings.Fields(c.name), "-h"),
			append(strings.Fields(c.name), "--help"),
			append([]string{"help"}, strings.Fields(c.name)...),
		} {
			t.Run(strings.Join(args, " "), func(t *testing.T) {
				r := runArgs(context.Background(), args...)
				assert.Equal(t, exitOK, r.code)
				assert.Empty(t, r.stderr)
				if c.name == "" {
					assert.True(t, strings.HasPrefix(r.stdout, "usage: keepalive [flags] "), r.stdout)
					for _, other := range commands {
						assert.Contains(t, squeeze(r.stdout), squeeze(other.usageLine()))
						assert.Contains(t, r.stdout, other.summary)
					}
				} else {
					assert.True(t, strings.HasPrefix(r.stdout, "usage: "+c.usageLine()+"\n\n"), r.stdout)
				}
				require.NotEmpty(t, c.examples, "every command shows an example")
				assert.Contains(t, r.stdout, "\nExamples:\n")
				for _, ex := range c.examples {
					assert.Contains(t, r.stdout, "\n  "+ex.line+"\n")
				}
				fs := newFlagSet(c)
				fs.VisitAll(func(f *flag.Flag) {
					assert.Regexp(t, `\n  -`+regexp.QuoteMeta(f.Name)+`( \w+)?\n      \S`, r.stdout)
				})
				assert.True(t, strings.HasSuffix(r.stdout, "\n"+c.exits.help()), "ends with the command's own exit statuses: %s", r.stdout)
				for _, line := range strings.Split(r.stdout, "\n") {
					if !strings.HasPrefix(line, "  keepalive") && !strings.HasPrefix(line, "        keepalive") && !strings.Contains(line, "keepalive suggest -idle-timeout D -detect D") {
						assert.LessOrEqual(t, len([]rune(line)), 80, "too long: %q", line)
					}
				}
			})
		}
	}
}

// TestHelpExitStatus checks that each command's -h says what its own exit
// statuses mean: every command has its row, the statuses it never returns
// are not listed, and no command speaks of another's work.
func TestHelpExitStatus(t *testing.T) {
	seen := map[string]string{}
	for _, c := range commands {
		h := c.exits.help()
		require.True(t, strings.HasPrefix(h, "Exit status:\n  0  "), "%s: %q", c.prog(), h)
		assert.Contains(t, h, "\n  2  ", c.prog())
		assert.Equal(t, c.exits.fail != "", strings.Contains(h, "\n  1  "), "%s: status 1 listed only when the command can fail: %q", c.prog(), h)
		if other, ok := seen[h]; ok && c.exits.fail != "" {
			t.Errorf("%s and %s say the same of their exit statuses: %q", c.prog(), other, h)
		}
		seen[h] = c.prog()
	}
	for _, tt := range []struct {
		cmd  *command
		want string
	}{
		{suggestCommand, "Exit status:\n  0  done\n  2  a bad command line, or an -idle-timeout and -detect that no Config\n     meets\n"},
		{sysctlCommand, "Exit status:\n  0  done\n  1  this system keeps no keepalive defaults in sysctls: the lines are\n     Linux's\n  2  a bad command line or Config: nothing is done\n"},
		{helpCommand, "Exit status:\n  0  done\n  2  an unknown command, or more than one\n"},
	} {
		assert.Equal(t, tt.want, tt.cmd.exits.help(), tt.cmd.prog())
	}
	for _, c := range []*command{sysctlCommand, suggestCommand, auditCommand, applyCommand, exporterCommand, helpCommand} {
		assert.NotContains(t, c.exits.help(), "refused", "%s makes no connection", c.prog())
	}
}

// newFlagSet returns the flags c defines.
func newFlagSet(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet(c.prog(), flag.ContinueOnError)
	c.setup(fs)
	return fs
}

// TestHelpConfigFlags checks what -h says of the Config flags: the
// defaults, including the user timeout's rule.
func TestHelpConfigFlags(t *testing.T) {
	for _, name := range []string{"", "dial", "sysctl"} {
		r := runArgs(context.Background(), append(strings.Fields(name), "-h")...)
		out := strings.Join(strings.Fields(r.stdout), " ")
		assert.Contains(t, out, "-idle duration idle time before the first probe (TCP_KEEPIDLE), a duration in whole seconds; 0 for the system default (default 1m0s)")
		assert.Contains(t, out, "-interval duration time between probes (TCP_KEEPINTVL), a duration in whole seconds; 0 for the system default (default 10s)")
		assert.Contains(t, out, "-count number unanswered probes before the connection is dropped (TCP_KEEPCNT), a whole number; 0 for the system default (default 5)")
		assert.Contains(t, out, "-user-timeout duration longest time sent data may stay unacknowledged (TCP_USER_TIMEOUT), a duration in whole milliseconds; 0 for no user timeout (default idle + interval × count)")
		assert.Contains(t, out, "The fields given win and the rest keep their defaults: a field's own flag wins over -config, and -config over the default, idle=60s,interval=10s,count=5")
		assert.Contains(t, out, `-config "" is the zero Config: every field the system default.`)
	}
}

func TestWrap(t *testing.T) {
	for _, tt := range []struct{ text, indent, want string }{
		{"", "", ""},
		{"one two", "  ", "  one two\n"},
		{"a\nb\n\nc", "", "a b\n\nc\n"},
		{"x\n  kept   as is\ny", "    ", "    x\n      kept   as is\n    y\n"},
		{strings.Repeat("word ", 20), "", strings.TrimSpace(strings.Repeat("word ", 15)) + "\n" + strings.TrimSpace(strings.Repeat("word ", 5)) + "\n"},
		{"× × ×", "", "× × ×\n"},
	} {
		assert.Equal(t, tt.want, wrap(tt.text, tt.indent), "%q", tt.text)
	}
}

// TestProgress checks that progress is drawn in place on a terminal, and
// not at all elsewhere.
func TestProgress(t *testing.T) {
	var buf bytes.Buffer
	e := &env{stderr: &buf}
	stop := e.showProgress(time.Millisecond, func() string { return "working" })
	time.Sleep(20 * time.Millisecond)
	stop()
	assert.Empty(t, buf.String())

	e.tty = true
	n := 0
	stop = e.showProgress(5*time.Millisecond, func() string { n++; return "step" })
	time.Sleep(50 * time.Millisecond)
	stop()
	out := buf.String()
	assert.True(t, strings.HasPrefix(out, "\rstep\x1b[K"), "%q", out)
	assert.True(t, strings.HasSuffix(out, "\rstep\x1b[K\r\x1b[K"), "erased at the end: %q", out)
	assert.Equal(t, n, strings.Count(out, "\rstep\x1b[K"))
	assert.GreaterOrEqual(t, n, 2, "redrawn")
}
