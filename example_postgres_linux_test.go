package keepalive_test

import (
	"fmt"

	"github.com/keepalive-go/keepalive"
)

// The keepalive options of a libpq connection string become a Config; the
// rest of the string goes to pgx or lib/pq, and the Config to the Dialer
// they dial with.
func ExampleParsePostgres() {
	c, rest, err := keepalive.ParsePostgres("postgres://app@db.internal/app?sslmode=require&keepalives_idle=30&keepalives_interval=10&keepalives_count=3")
	fmt.Println(c.Idle, c.Interval, c.Count, err)
	fmt.Println(rest)

	c, rest, err = keepalive.ParsePostgres("host=db.internal keepalives = 1 keepalives_idle='60' application_name='billing sync'")
	fmt.Println(c.Idle, err)
	fmt.Println(rest)

	c, rest, _ = keepalive.ParsePostgres("host=db.internal keepalives=0")
	fmt.Println(c.Off, rest)

	_, _, err = keepalive.ParsePostgres("host=db.internal keepalives_idle=30s")
	fmt.Println(err)
	// Output:
	// 30s 10s 3 <nil>
	// postgres://app@db.internal/app?sslmode=require
	// 1m0s <nil>
	// host=db.internal application_name='billing sync'
	// true host=db.internal
	// keepalive: invalid integer value "30s" for connection option "keepalives_idle"
}
