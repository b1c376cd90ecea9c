//go:build !plan9

package main

import (
	"log/slog"
	"net"
	"net/http"

	"github.com/prometheus/exporter-toolkit/web"
)

// checkWebConfig reads the web configuration file path, if not empty, and
// the certificates it names.
func checkWebConfig(path string) error {
	return web.Validate(path)
}

// serveWeb serves srv on ln through the Prometheus exporter toolkit, with
// the TLS and basic authentication of the web configuration file path, if
// not empty.
func serveWeb(ln net.Listener, srv *http.Server, path string, logger *slog.Logger) error {
	return web.Serve(ln, srv, &web.FlagConfig{
		WebListenAddresses: &[]string{ln.Addr().String()},
		WebSystemdSocket:   new(bool),
		WebConfigFile:      &path,
	}, logger)
}
