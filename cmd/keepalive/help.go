package main

import (
	"context"
	"flag"
)

var helpCommand = &command{
	name:    "help",
	args:    "[COMMAND]",
	summary: "show the help of a command",
	help: `Prints what "keepalive COMMAND -h" prints: the usage, the flags and examples
of COMMAND; with no COMMAND, those of keepalive run without one.`,
	examples: []example{
		{"keepalive help dial", "the flags and examples of dial"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		return func(ctx context.Context, e *env, args []string) error {
			if len(args) > 1 {
				return usagef("unexpected argument %q after COMMAND", args[1])
			}
			cmd := demoCommand
			if len(args) == 1 {
				if cmd = lookup(args[0]); cmd == nil {
					return usagef("unknown command %q", args[0])
				}
			}
			cmd.run(ctx, []string{"-h"}, e)
			return nil
		}
	},
}
