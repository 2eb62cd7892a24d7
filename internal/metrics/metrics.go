// Package metrics serves rbn's own Prometheus metrics (not the kubelet
// series of the nodes rbn-kubelet serves: those are the kubelet API's).
// Each program makes one registry (NewRegistry), registers what it
// measures in it, and serves it with Serve on its metricsBindAddress.
//
// Figures that a component already keeps (an SSH connection's state and
// counters, the S3 relay's totals) are read when Prometheus scrapes, by a
// collector (collect-on-scrape, as kube-state-metrics does): nothing to
// update on the hot path, and no series left behind for a host that is
// gone. Latencies are observed where they happen, into histograms.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// Namespace prefixes every metric of rbn's own.
const Namespace = "rbn"

// NewRegistry returns a registry with the Go runtime's and the process's
// collectors.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Off as an address serves no metrics (a metricsBindAddress of "0").
const Off = "0"

// Listen binds addr ("host:port") for Serve, so that a port in use fails
// at start. Off (or "") serves nothing: nil listener, nil error.
func Listen(addr string) (net.Listener, error) {
	if addr == "" || addr == Off {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves reg at GET /metrics on ln (plain HTTP) until ctx ends; a
// nil ln serves nothing and waits for ctx. With profiling, it also serves
// Go's profiles at /debug/pprof/ (net/http/pprof): goroutine dumps, heap,
// CPU profiles. They are unauthenticated, as the metrics are: an operator
// turns them on (enableProfiling) on a port only they reach.
func Serve(ctx context.Context, ln net.Listener, reg prometheus.Gatherer, profiling bool) error {
	if ln == nil {
		<-ctx.Done()
		return nil
	}
	log := logging.FromContext(ctx)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	if profiling {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	log.Info("metrics listening", "addr", ln.Addr().String(), "profiling", profiling)
	if err := ServeHandler(ctx, ln, mux); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// ServeHandler serves h on ln (plain HTTP) until ctx ends, then shuts the
// server down: for /metrics and a program's other plain endpoints (health
// probes).
func ServeHandler(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
