package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// This file is the one place for what every command shares: the table of
// commands, the usage text, the exit statuses and the wording of errors.
// A command is a file that defines a *command and a row in init below.

// commands is the table of commands, in the order the usage lists them. It
// is set in init because help refers to it.
var commands []*command

func init() {
	// Each command, and what its exit statuses mean: 0 that it did its
	// work, 1 that the work failed, 2 a bad command line, when nothing is
	// done. An empty fail means it never exits with 1.
	for _, row := range []struct {
		cmd *command
		exits
	}{
		// The loopback demo, when no command is given.
		{demoCommand, exits{
			fail:  "the loopback connection could not be made or its values read back",
			usage: usageConfig}},
		{dialCommand, exits{
			done:  "connected and read back; with -watch, then the peer closed the connection (FIN) or the watch was interrupted",
			fail:  "the connection could not be made or read back; with -watch, the kernel declared the peer dead (ETIMEDOUT) or the peer reset it",
			usage: usageConfig}},
		{sysctlCommand, exits{
			fail:  "this system keeps no keepalive defaults in sysctls: the lines are Linux's",
			usage: usageConfig}},
		{pathCommand, exits{
			done: "an answer: the idle timeout found, or none lost within -max",
			fail: "no answer: HOST:PORT could not be reached, or the search failed or was interrupted first (what was learned by then is said)"}},
		{suggestCommand, exits{
			usage: "a bad command line, or an -idle-timeout and -detect that no Config meets"}},
		{auditCommand, exits{
			done: "listed, also when the values of some connections could not be read (each says why)",
			fail: "the sockets could not be listed, -pid names no process or one that may not be inspected, or the -prom file could not be written (it is left as it was)"}},
		{applyCommand, exits{
			done:  "every selected connection changed",
			fail:  "no process -pid, or one that may not be inspected (nothing is changed); it holds no connection the flags select; or a socket could not be changed (the others are changed all the same)",
			usage: "a bad command line or value: nothing is changed"}},
		{exporterCommand, exits{
			done: "interrupted (SIGINT or SIGTERM): it stopped serving",
			fail: "it could not listen on -listen, or serving failed"}},
		{enforceCommand, exits{
			done:  "the policy is in force and every connection it could reach was set; listed; removed",
			fail:  "the policy could not be put in force, for want of capabilities or of what the kernel lacks (nothing is left attached or pinned), or is in force but not every existing connection was reached; -remove: no policy on -cgroup",
			usage: "a bad command line or Config, or a -cgroup that is not a cgroup v2 directory: nothing is done"}},
		{helpCommand, exits{
			usage: "an unknown command, or more than one"}},
	} {
		row.cmd.exits = row.exits
		commands = append(commands, row.cmd)
	}
}

// command is one row of the table.
type command struct {
	// name is the word that selects the command; empty for the demo, which
	// runs when the first argument is a flag or there is none.
	name string

	// args is what follows the name on the usage line, such as
	// "[flags] ADDR".
	args string

	// summary says what the command does in a few words, for the list of
	// commands.
	summary string

	// help is what -h prints after the usage line: what the command does
	// and what its output and exit status mean, in paragraphs.
	help string

	// examples are command lines that work as written; -h shows them and
	// the tests run each.
	examples []example

	// setup defines the command's flags on fs and returns the function that
	// runs the command with the arguments left after the flags. It is
	// called once per run, so that no flag value outlives a run.
	setup func(fs *flag.FlagSet) func(ctx context.Context, e *env, args []string) error

	// exits says what the exit statuses mean; the table in init sets it.
	exits exits
}

// exits says what a command's exit statuses mean, for -h.
type exits struct {
	done  string // what exit status 0 means; empty: done
	fail  string // when the command exits with 1; empty: never
	usage string // when it exits with 2, if more than a bad command line
}

// usageConfig is what exit status 2 means for the commands that take a
// Config.
const usageConfig = "a bad command line or Config: nothing is done"

// help writes what the exit statuses mean, one paragraph per status.
func (x exits) help() string {
	status := func(code int, text string) string {
		w := wrap(text, "     ")
		return fmt.Sprintf("  %d  %s", code, w[5:])
	}
	var b strings.Builder
	b.WriteString("Exit status:\n")
	done := "done"
	if x.done != "" {
		done = x.done
	}
	b.WriteString(status(exitOK, done))
	if x.fail != "" {
		b.WriteString(status(exitFail, x.fail))
	}
	usage := "a bad command line: nothing is done"
	if x.usage != "" {
		usage = x.usage
	}
	b.WriteString(status(exitUsage, usage))
	return b.String()
}

// example is one command line that -h shows, and what it does.
type example struct {
	line  string // starts with "keepalive"
	about string
}

// Exit statuses; what each means for a command is in its row of the table.
const (
	exitOK    = 0 // done
	exitFail  = 1 // the work failed
	exitUsage = 2 // a bad command line: nothing was done
)

// env is what a command runs with.
type env struct {
	stdout, stderr io.Writer

	// tty reports that stderr is a terminal, on which progress may be
	// drawn and redrawn in place.
	tty bool
}

// progress draws line on stderr in place of the last one when stderr is a
// terminal, and does nothing otherwise; an empty line erases it.
func (e *env) progress(line string) {
	if !e.tty {
		return
	}
	fmt.Fprintf(e.stderr, "\r%s\x1b[K", line)
}

// showProgress draws line() on stderr every period, in place, while stderr
// is a terminal, until the function it returns is called, which erases it.
func (e *env) showProgress(period time.Duration, line func() string) (stop func()) {
	if !e.tty {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			e.progress(line())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		e.progress("")
	}
}

// latest holds the last value a progress callback reported, for the
// progress line drawn on another goroutine.
type latest[T any] struct {
	mu sync.Mutex
	v  T
}

func (l *latest[T]) set(v T) {
	l.mu.Lock()
	l.v = v
	l.mu.Unlock()
}

func (l *latest[T]) get() T {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.v
}

// showProgressAfter is showProgress for work that is often quick: it
// starts drawing only once delay has passed, so that quick work draws
// nothing.
func (e *env) showProgressAfter(delay, period time.Duration, line func() string) (stop func()) {
	if !e.tty {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false
	end := func() {}
	t := time.AfterFunc(delay, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			end = e.showProgress(period, line)
		}
	})
	return func() {
		t.Stop()
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		end()
	}
}

// run runs the command line args (without the program name) and returns
// the exit status. Every message for the user ends in e.stderr and starts
// with the command's name; only results go to e.stdout.
func run(ctx context.Context, args []string, e *env) int {
	cmd := demoCommand
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd = lookup(args[0])
		if cmd == nil {
			fmt.Fprintf(e.stderr, "keepalive: unknown command %q\n\n", args[0])
			printUsage(e.stderr)
			return exitUsage
		}
		args = args[1:]
	}
	return cmd.run(ctx, args, e)
}

// lookup returns the command named name, or nil.
func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name && name != "" {
			return c
		}
	}
	return nil
}

// prog is the command's name as messages start with it: "keepalive dial".
func (c *command) prog() string {
	if c.name == "" {
		return "keepalive"
	}
	return "keepalive " + c.name
}

// usageLine is the command's synopsis: "keepalive dial [flags] ADDR".
func (c *command) usageLine() string {
	return c.prog() + " " + c.args
}

func (c *command) run(ctx context.Context, args []string, e *env) int {
	fs := flag.NewFlagSet(c.prog(), flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and help are printed below
	fs.Usage = func() {}
	runFn := c.setup(fs)
	pos, err := parseFlags(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		c.printHelp(e.stdout, fs)
		return exitOK
	}
	if err == nil {
		err = runFn(ctx, e, pos)
	}
	return c.report(e.stderr, err)
}

// parseFlags parses args, flags and positional arguments in any order, and
// returns the positional ones. A flag error names the flag and says what
// it takes.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{flagError(fs, err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// flagError adds to the flag package's "flag needs an argument: -x" what
// -x takes. The package's other errors already say it: the Set methods of
// the values below write the accepted form.
func flagError(fs *flag.FlagSet, err error) string {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "flag needs an argument: -")
	if !ok {
		return msg
	}
	if f := fs.Lookup(name); f != nil {
		if v, ok := f.Value.(interface{ form() string }); ok {
			return msg + " (" + v.form() + ")"
		}
	}
	return msg
}

// usageError is a bad command line or Config: the command did nothing.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

// usagef returns a usageError.
func usagef(format string, a ...any) error {
	return usageError{fmt.Sprintf(format, a...)}
}

// badConfig makes err, from validating a Config, a usageError.
func badConfig(err error) error {
	if err == nil {
		return nil
	}
	return usageError{message(err)}
}

// message is err's text without the prefix of the library ("keepalive: ")
// or of its operations packages ("audit: ", "metrics: ", "enforce: "),
// which the command's own name replaces.
func message(err error) string {
	s := err.Error()
	for _, prefix := range []string{"keepalive: ", "audit: ", "metrics: ", "enforce: "} {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			return rest
		}
	}
	return s
}

// report prints err, if any, and returns the exit status it calls for: a
// usageError with the usage line, anything else as a failure.
func (c *command) report(w io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(w, "%s: %s\n", c.prog(), message(err))
	if u := (usageError{}); errors.As(err, &u) {
		fmt.Fprintf(w, "usage: %s\nRun \"%s -h\" for the flags and examples.\n", c.usageLine(), c.prog())
		return exitUsage
	}
	return exitFail
}

// noArgs refuses positional arguments.
func noArgs(args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

// oneArg returns the one positional argument, which the usage line calls
// name.
func oneArg(args []string, name string) (string, error) {
	switch {
	case len(args) == 0:
		return "", usagef("missing %s", name)
	case len(args) > 1:
		return "", usagef("unexpected argument %q after %s", args[1], name)
	}
	return args[0], nil
}

// printUsage prints the list of commands.
func printUsage(w io.Writer) {
	const width = 29
	for i, c := range commands {
		lead := "       "
		if i == 0 {
			lead = "usage: "
		}
		line := c.usageLine()
		if len(line) >= width {
			fmt.Fprintf(w, "%s%s\n%s%*s%s\n", lead, line, "       ", width, "", c.summary)
			continue
		}
		fmt.Fprintf(w, "%s%-*s%s\n", lead, width, line, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"keepalive COMMAND -h\" for the flags and examples of a command.")
}

// printHelp prints -h: the usage line (for the demo, the list of commands),
// the help, the examples, the flags and what the command's exit statuses
// mean.
func (c *command) printHelp(w io.Writer, fs *flag.FlagSet) {
	if c.name == "" {
		printUsage(w)
	} else {
		fmt.Fprintf(w, "usage: %s\n", c.usageLine())
	}
	fmt.Fprintf(w, "\n%s", wrap(c.help, ""))
	if len(c.examples) > 0 {
		fmt.Fprintln(w, "\nExamples:")
		for _, ex := range c.examples {
			fmt.Fprintf(w, "\n  %s\n%s", ex.line, wrap(ex.about, "      "))
		}
	}
	var any bool
	fs.VisitAll(func(f *flag.Flag) {
		if !any {
			fmt.Fprintln(w, "\nFlags:")
			any = true
		}
		name, usage := flag.UnquoteUsage(f)
		fmt.Fprintf(w, "\n  -%s", f.Name)
		if name != "" {
			fmt.Fprintf(w, " %s", name)
		}
		if f.DefValue != "" {
			usage += fmt.Sprintf(" (default %s)", f.DefValue)
		}
		fmt.Fprintf(w, "\n%s", wrap(usage, "      "))
	})
	fmt.Fprintf(w, "\n%s", c.exits.help())
}

// wrap fills the lines of text to 76 columns, each after indent, keeping
// blank lines, and lines that start with a space as they are.
func wrap(text, indent string) string {
	const width = 76
	var b strings.Builder
	col := 0
	text = strings.TrimSpace(text)
	if text == "" {
		return ""
	}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, " ") {
			if col > 0 {
				b.WriteString("\n")
			}
			if line != "" {
				b.WriteString(indent + line)
			}
			b.WriteString("\n")
			col = 0
			continue
		}
		for _, word := range strings.Fields(line) {
			switch {
			case col == 0:
				b.WriteString(indent + word)
				col = len(indent) + utf8.RuneCountInString(word)
			case col+1+utf8.RuneCountInString(word) > width:
				b.WriteString("\n" + indent + word)
				col = len(indent) + utf8.RuneCountInString(word)
			default:
				b.WriteString(" " + word)
				col += 1 + utf8.RuneCountInString(word)
			}
		}
	}
	if col > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

// The flag values. Each Set error says what the flag takes, and the flag
// package puts the flag's name and the value given before it:
// invalid value "350" for flag -idle-timeout: want a duration such as ...

// durationValue is a time.Duration flag.
type durationValue struct {
	d       *time.Duration
	example string // such as "350s or 4m"
	zero    string // what 0 means, if it is allowed: "no limit"
}

func durationFlag(fs *flag.FlagSet, name string, def time.Duration, example, zero, usage string) *time.Duration {
	d := def
	v := &durationValue{d: &d, example: example, zero: zero}
	fs.Var(v, name, usage)
	if def == 0 {
		fs.Lookup(name).DefValue = ""
	}
	return &d
}

func (v *durationValue) form() string { return flagForm("a duration", v.example, v.zero) }

// flagForm says what a flag takes: what, such as example, and 0 when zero
// names what 0 means.
func flagForm(what, example, zero string) string {
	s := "want " + what + " such as " + example
	if zero != "" {
		s += ", or 0 for " + zero
	}
	return s
}

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return fmt.Errorf("%s (%v)", v.form(), err)
	case d < 0 || d == 0 && v.zero == "":
		return errors.New(v.form())
	}
	*v.d = d
	return nil
}

func (v *durationValue) String() string {
	if v == nil || v.d == nil {
		return ""
	}
	return v.d.String()
}

// boolValue is a flag that is given alone to mean true, or as -name=false.
type boolValue struct{ b *bool }

func boolFlag(fs *flag.FlagSet, name, usage string) *bool {
	b := false
	fs.Var(&boolValue{&b}, name, usage)
	fs.Lookup(name).DefValue = ""
	return &b
}

func (v *boolValue) form() string { return "want true or false" }

func (v *boolValue) Set(s string) error {
	switch s {
	case "true":
		*v.b = true
	case "false":
		*v.b = false
	default:
		return errors.New(v.form())
	}
	return nil
}

func (v *boolValue) String() string {
	if v == nil || v.b == nil {
		return ""
	}
	return fmt.Sprint(*v.b)
}

func (v *boolValue) IsBoolFlag() bool { return true }

// fileValue is a flag that names a file.
type fileValue struct{ path *string }

func fileFlag(fs *flag.FlagSet, name, usage string) *string {
	p := ""
	fs.Var(&fileValue{&p}, name, usage)
	return &p
}

func (v *fileValue) form() string { return "want the path of a file" }

func (v *fileValue) Set(s string) error {
	if s == "" {
		return errors.New(v.form())
	}
	*v.path = s
	return nil
}

func (v *fileValue) String() string {
	if v == nil || v.path == nil {
		return ""
	}
	return *v.path
}
