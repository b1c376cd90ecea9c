//go:build js || plan9 || wasip1

package keepalive_test

// hostFacts finds nothing: Plan 9, js/wasm and wasip1 have no socket
// option, whatever the host (sockopt_other.go). The tests that make
// connections do not build here (helpers_socket_test.go).
func hostFacts() (host, error) { return host{}, nil }
