// Package extender is the rbn-extender program: flags, loading its
// configuration (config.ExtenderConfiguration), the informer cache and the
// HTTP server kube-scheduler calls as a scheduler extender.
package extender

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/kubeclient"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/metrics"
	"github.com/remote-build-nodes/rbn/internal/servingcert"
	"github.com/remote-build-nodes/rbn/internal/version"
	"github.com/remote-build-nodes/rbn/scheduler"
	"github.com/remote-build-nodes/rbn/scheduler/server"
	"github.com/remote-build-nodes/rbn/scheduler/state"
)

// Run runs rbn-extender with args (without the program name) until ctx ends.
func Run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("rbn-extender", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "path of the "+config.ExtenderKind+" file (apiVersion "+config.APIVersion+"); without it, the defaults")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig path; overrides the configuration's kubeconfig")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		_, err := fmt.Fprintln(stderr, "rbn-extender", version.Version)
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	cfg := &config.ExtenderConfiguration{}
	if *configPath == "" {
		config.SetDefaults(cfg)
	} else if err := config.Load(*configPath, cfg); err != nil {
		return err
	}
	if *kubeconfig != "" {
		cfg.Kubeconfig = *kubeconfig
	}
	if err := config.ValidateAll(cfg); err != nil {
		return err
	}
	log, err := logging.Setup(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		return err
	}
	ctx = logging.IntoContext(ctx, log)

	_, client, err := kubeclient.Clientset(cfg.Kubeconfig, "rbn-extender/"+version.Version)
	if err != nil {
		return err
	}
	cache, err := state.New(state.Config{Client: client})
	if err != nil {
		return err
	}
	reg := metrics.NewRegistry()
	handler, err := server.New(server.Config{Source: cache, Policy: policy(cfg), Logger: log, Metrics: server.NewMetrics(reg)})
	if err != nil {
		return err
	}
	metricsLn, err := metrics.Listen(cfg.MetricsBindAddress)
	if err != nil {
		return err
	}
	srv, ln, cert, err := listen(cfg, handler)
	if err != nil {
		return err
	}
	log.Info("rbn-extender starting", "version", version.Version, "listen", ln.Addr().String(), "tls", cfg.TLSCertFile != "",
		"factsMaxAge", cfg.FactsMaxAge.Duration, "defaultImageSize", cfg.DefaultImageSize.String(),
		"loadTolerance", *cfg.LoadTolerance, "recentFailuresLimit", cfg.RecentFailuresLimit)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var serveErr, metricsErr error
	if cert != nil {
		wg.Add(1)
		go func() { defer wg.Done(); cert.Run(ctx) }()
	}
	wg.Add(4)
	go func() { defer wg.Done(); cache.Run(ctx) }()
	go func() {
		defer wg.Done()
		defer cancel()
		metricsErr = metrics.Serve(ctx, metricsLn, reg, cfg.EnableProfiling)
	}()
	go func() {
		defer wg.Done()
		defer cancel()
		if srv.TLSConfig != nil {
			serveErr = srv.ServeTLS(ln, "", "") // the certificate comes from cert
		} else {
			serveErr = srv.Serve(ln)
		}
		if errors.Is(serveErr, http.ErrServerClosed) {
			serveErr = nil
		}
	}()
	go func() {
		defer wg.Done()
		<-ctx.Done()
		shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Shutdown(shutdownCtx)
	}()
	go logWhenReady(ctx, cache)
	wg.Wait()
	if serveErr != nil {
		serveErr = fmt.Errorf("serve: %w", serveErr)
	}
	if err := errors.Join(serveErr, metricsErr); err != nil {
		return err
	}
	log.Info("rbn-extender stopped")
	return nil
}

// logWhenReady says once when the caches (nodes, pods, claims, storage
// classes) have synced: from then on /readyz is ok and decisions are made
// (before, calls fail with 503). Without the RBAC to list one of them, this
// never comes: the informer's errors in the log say which.
func logWhenReady(ctx context.Context, cache *state.Cache) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for !cache.Ready() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	logging.FromContext(ctx).Info("caches of nodes, pods, claims and storage classes synced: serving decisions")
}

// policy is the decisions' part of a defaulted, valid configuration.
func policy(cfg *config.ExtenderConfiguration) scheduler.Policy {
	return scheduler.Policy{
		MaxFactsAge:           cfg.FactsMaxAge.Duration,
		DefaultImageSizeBytes: cfg.DefaultImageSize.Value(),
		LoadTolerance:         int(*cfg.LoadTolerance),
		RecentFailuresLimit:   int(cfg.RecentFailuresLimit),
	}
}

// listen makes the extender's server and listener; with TLS, its serving
// certificate too, read again when its files change (cert.Run).
func listen(cfg *config.ExtenderConfiguration, h http.Handler) (*http.Server, net.Listener, *servingcert.Cert, error) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
	}
	var cert *servingcert.Cert
	if cfg.TLSCertFile != "" {
		var err error
		if cert, err = servingcert.New("rbn-extender serving certificate", cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, nil, nil, err
		}
		srv.TLSConfig = &tls.Config{GetCertificate: cert.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, nil, fmt.Errorf("client CA %s: no PEM certificate", cfg.ClientCAFile)
		}
		// Verified when given, required by requireClientCert except for the
		// probes: kubelet's probes present no certificate. (Validate has
		// checked that a client CA comes with TLS.)
		srv.TLSConfig.ClientCAs, srv.TLSConfig.ClientAuth = pool, tls.VerifyClientCertIfGiven
		srv.Handler = requireClientCert(h)
	}
	addr := net.JoinHostPort(cfg.ListenAddress, strconv.Itoa(int(cfg.Port)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return srv, ln, cert, nil
}

// requireClientCert refuses every request but the health probes that came
// without a verified client certificate.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probe := r.Method == http.MethodGet && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
		if !probe && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			http.Error(w, "a client certificate signed by the configured clientCAFile is required", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
