package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keepalive-go/keepalive/ops/audit"
	"github.com/keepalive-go/keepalive/ops/enforce"
	"github.com/keepalive-go/keepalive/ops/metrics"
)

// defaultListen is where the exporter listens unless told otherwise:
// loopback only, since its metrics name processes and remote addresses.
const defaultListen = "127.0.0.1:9977"

var exporterCommand = &command{
	name:    "exporter",
	args:    "[flags]",
	summary: "serve the audit as Prometheus metrics",
	help: `Serves the keepalive of the host's TCP connections as Prometheus metrics on
/metrics: at each scrape it audits the host as "keepalive audit" does, with
the same flags, leaving out the connection the scrape came on (both ends),
and answers with

  keepalive_connections{command,verdict}  connections by command and verdict
  keepalive_probing_connections{command}  connections whose peer leaves their
                                          keepalive probes unanswered now
  keepalive_read_connections{method}      connections read, by method: bpf, pidfd
  keepalive_scrape_duration_seconds       how long the audit took
  keepalive_scrape_errors_total           audits that failed

for each policy of "keepalive enforce" in force (label cgroup), its
counters keepalive_policy_set_connections_total{how} (dialled, accepted,
existing), keepalive_policy_kept_setsockopt_total,
keepalive_policy_yielded_connections_total and
keepalive_policy_failed_options_total, the connections that carry it
(keepalive_policy_carrying_connections) and those of its cgroup
(keepalive_policy_cgroup_connections, through the BPF iterator only), and
keepalive_policy_start_time_seconds; and, with -per-connection, for each
connection (labels pid, command, local,
remote) keepalive_enabled, keepalive_idle_seconds,
keepalive_interval_seconds, keepalive_probes and
keepalive_user_timeout_seconds. That is up to 5 series per connection:
500,000 on a host with 100,000 connections, and new series with every new
connection; use it where connections are few and long-lived, or with a
filter.

The values are read as "keepalive audit" reads them, through a BPF
iterator or pidfd_getfd (-method); -bpffs says where the policies are
pinned.

It listens on loopback unless -listen says otherwise. -web-config takes the
web configuration file of the Prometheus exporter toolkit, as node_exporter
does, for TLS and basic authentication: the metrics name processes and
remote addresses. It serves until interrupted.

` + criteriaHelp,
	examples: []example{
		{"keepalive exporter -idle-timeout 350s -detect 2m", "serve on " + defaultListen + ", judging connections against AWS NLB's idle\ntimeout and a dead peer noticed within 2 minutes"},
		{"keepalive exporter -listen :9977 -web-config web.yml -idle-timeout 350s -per-connection", "serve on every address, with TLS and basic authentication from\nweb.yml, and one series per connection"},
	},
	setup: func(fs *flag.FlagSet) func(context.Context, *env, []string) error {
		listen := fs.String("listen", defaultListen, "serve on this `address` (host:port)")
		webConfig := fileFlag(fs, "web-config", "the exporter toolkit's web configuration `file`, for TLS and basic authentication")
		ff := addFilterFlags(fs, "only connections that process `pid` holds, in its network namespace")
		cf := addCriteriaFlags(fs)
		kernelOnly := boolFlag(fs, "kernel-only", "do not read values from the sockets: export only what the kernel reports")
		method := addMethodFlag(fs, "read")
		bpffs := addBPFFSFlag(fs)
		perConn := boolFlag(fs, "per-connection", "also export one series per connection and value")
		timeout := durationFlag(fs, "timeout", 10*time.Second, "10s", "no limit", "give up a scrape's audit after this `duration`, Prometheus' default scrape timeout")
		return func(ctx context.Context, e *env, args []string) error {
			if err := noArgs(args); err != nil {
				return err
			}
			if *kernelOnly && *method != audit.MethodAuto {
				return usagef("-kernel-only reads no values: -method is not for it")
			}
			if *kernelOnly && *bpffs != "" {
				return usagef("-kernel-only reads no values: -bpffs, where the policies that set them are, is not for it")
			}
			if _, _, err := net.SplitHostPort(*listen); err != nil {
				return usagef("-listen %q is not host:port: %v", *listen, err)
			}
			if err := checkWebConfig(*webConfig); err != nil {
				return usagef("-web-config %s: %v", *webConfig, err)
			}
			// Each scrape would only warn that the policies there cannot
			// be read: a directory given is checked once, at the start.
			if *bpffs != "" {
				if _, err := enforce.List(ctx, *bpffs); err != nil {
					return err
				}
			}
			logger := slog.New(slog.NewTextHandler(&prefixWriter{prefix: "keepalive exporter: ", w: e.stderr}, &slog.HandlerOptions{Level: slog.LevelWarn}))
			o := metrics.Options{
				Audit:         audit.Options{Criteria: cf.criteria(), Filter: ff.filter(), KernelOnly: *kernelOnly, Method: *method, BPFFS: *bpffs},
				PerConnection: *perConn,
				Timeout:       *timeout,
				ErrorLog:      logger,
			}
			ln, err := net.Listen("tcp", *listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "serving metrics on %s/metrics, %s\n", ln.Addr(), checked(o.Audit.Criteria))
			return serveMetrics(ctx, ln, newMetricsHandler(o, logger), *webConfig, logger)
		}
	},
}

// newMetricsHandler returns the exporter's handler: /metrics, with the
// exporter's own Go runtime and process metrics, as other exporters have,
// and a landing page. Each scrape's audit leaves out the connection the
// scrape came on, both ends, which exists only for it.
func newMetricsHandler(o metrics.Options, logger *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	c := metrics.NewCollector(o)
	opts := promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	}
	scrape := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		this := prometheus.NewRegistry()
		if local, remote, ok := connAddrs(r); ok {
			this.MustRegister(c.Scrape(local, remote))
		} else {
			this.MustRegister(c)
		}
		promhttp.HandlerFor(prometheus.Gatherers{this, reg}, opts).ServeHTTP(w, r)
	})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.InstrumentMetricHandler(reg, scrape))
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><head><title>keepalive exporter</title></head><body><h1>keepalive exporter</h1><p>The keepalive of this host's TCP connections.</p><p><a href="metrics">Metrics</a></p></body></html>`)
	})
	return mux
}

// connAddrs returns the local and remote addresses of the TCP connection
// that r came on.
func connAddrs(r *http.Request) (local, remote netip.AddrPort, ok bool) {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr)
	if !ok {
		return local, remote, false
	}
	remote, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return local, remote, false
	}
	return la.AddrPort(), remote, true
}

// serveMetrics serves h on ln, with the web configuration file webConfig
// if not empty, until ctx is done.
func serveMetrics(ctx context.Context, ln net.Listener, h http.Handler, webConfig string, logger *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	})
	defer stop()
	err := serveWeb(ln, srv, webConfig, logger)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// prefixWriter starts each line written to w with prefix.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out bytes.Buffer
	for line := range bytes.Lines(b) {
		out.WriteString(p.prefix)
		out.Write(line)
	}
	if _, err := p.w.Write(out.Bytes()); err != nil {
		return 0, err
	}
	return len(b), nil
}
