package main

import (
	"context"
	"flag"
	"fmt"
)

var sysctlCommand = &command{
	name:    "sysctl",
	args:    "[flags]",
	summary: "print the sysctl lines for a Config",
	help: `Prints the lines of a sysctl configuration file, as for /etc/sysctl.d/, that
make a Config the machine-wide default for sockets that turn keepalive on and
set no values of their own. A Go program sets its own values on every
connection (15s, 15s and 9 unless told otherwise), so these lines do not
reach it. UserTimeout has no sysctl: it is written as a comment.

` + configHelp,
	examples: []example{
		{"keepalive sysctl -config idle=60s,interval=10s,count=5", "print the lines; as root, write them to a file and load it with\n" +
			"  keepalive sysctl -config idle=60s,interval=10s,count=5 > /etc/sysctl.d/60-keepalive.conf\n" +
			"  sysctl --system"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		cf := addConfigFlags(fs)
		return func(ctx context.Context, e *env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			c, err := cf.config()
			if err != nil {
				return err
			}
			conf, err := c.SysctlConf()
			if err != nil {
				return err
			}
			fmt.Fprint(e.stdout, conf)
			return nil
		}
	},
}
