package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
)

// The Prometheus exporter toolkit, which reads the web configuration file,
// is not built for plan9: there the exporter serves plain HTTP only.

func checkWebConfig(path string) error {
	if path != "" {
		return fmt.Errorf("TLS and basic authentication are not built for plan9: %w", errors.ErrUnsupported)
	}
	return nil
}

func serveWeb(ln net.Listener, srv *http.Server, path string, logger *slog.Logger) error {
	return srv.Serve(ln)
}
