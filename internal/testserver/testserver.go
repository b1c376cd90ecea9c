// Package testserver starts the real servers that tests run against
// (PostgreSQL, MariaDB, ...) as children of the test binary, each in a
// folder of its own, on a port of its own, and stops them: the process
// machinery, and the data folders that PostgreSQL and MariaDB need before
// they start. Whether a server is ready is the caller's to say, with the
// client it has, so that this package needs nothing beyond the standard
// library.
package testserver
