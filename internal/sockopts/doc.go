// Package sockopts reads a socket's keepalive options with its own
// getsockopt calls, independently of the keepalive package, so that tests
// can check what the library set against what the kernel reports.
//
// Read and Values exist where the options can be read: Linux, illumos and
// Solaris, and AIX. Values holds the options each of them has.
package sockopts
