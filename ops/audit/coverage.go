package audit

import "github.com/keepalive-go/keepalive/ops/enforce"

// Coverage is a policy of keepalive enforce in force, with how many of an
// audit's connections it covers.
type Coverage struct {
	// Policy is the policy as [enforce.List] reads it: its cgroup,
	// Config, flows, since when, and its counters (Policy.Counts): the
	// connections it set, dialled, accepted and existing, the setsockopt
	// calls it kept from changing its values, the connections on which it
	// left options to the program.
	Policy enforce.Policy

	// Connections is how many of the audit's connections belong to the
	// policy's cgroup or a cgroup below it, by their socket's cgroup
	// ([Conn.Cgroup]), which only the BPF iterator reads: a connection
	// read otherwise is not counted.
	Connections int

	// Carrying is how many of the audit's connections carry the policy:
	// their record names it, and it is still in force ([Conn.SetBy]).
	// Those of Connections that do not carry it are outside its flows, or
	// left to a nearer cgroup's policy, or were established while it was
	// being replaced.
	Carrying int
}
