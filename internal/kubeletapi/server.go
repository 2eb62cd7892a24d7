// Package kubeletapi is the one HTTPS listener that serves the kubelet API
// (logs, exec, attach, port-forward, stats) for every node of the process.
// Pod routes carry namespace and pod name, which resolve to the node that
// runs the pod.
package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/provider"
)

// Resolver finds the pod handler of the node running a pod.
type Resolver interface {
	Resolve(namespace, name string) (*provider.Pods, bool)
}

// Config configures the server.
type Config struct {
	ListenAddress string
	Port          int32
	CertFile      string
	KeyFile       string
	// ClientCAFile, when set, requires every client to present a certificate it signed.
	ClientCAFile string
	Resolver     Resolver
	// StreamIdleTimeout matches kubelet's default (4h): long debug sessions stay up.
	StreamIdleTimeout     time.Duration
	StreamCreationTimeout time.Duration
}

// Server is the kubelet API listener.
type Server struct {
	cfg Config
	srv *http.Server
	ln  net.Listener
}

// New loads the certificates and binds the port, so that a bad configuration fails at start.
func New(cfg Config) (*Server, error) {
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = 4 * time.Hour
	}
	if cfg.StreamCreationTimeout == 0 {
		cfg.StreamCreationTimeout = 30 * time.Second
	}
	cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("kubelet API serving certificate: %w", err)
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if cfg.ClientCAFile != "" {
		pem, err := os.ReadFile(cfg.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet API client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kubelet API client CA %s: no certificate found", cfg.ClientCAFile)
		}
		tlsCfg.ClientCAs = pool
		tlsCfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	addr := net.JoinHostPort(cfg.ListenAddress, strconv.Itoa(int(cfg.Port)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kubelet API listen on %s: %w", addr, err)
	}
	s := &Server{cfg: cfg, ln: tls.NewListener(ln, tlsCfg)}
	mux := http.NewServeMux()
	vkapi.AttachPodRoutes(vkapi.PodHandlerConfig{
		GetContainerLogs:      s.containerLogs,
		GetPodsFromKubernetes: s.pods,
		StreamIdleTimeout:     cfg.StreamIdleTimeout,
		StreamCreationTimeout: cfg.StreamCreationTimeout,
	}, mux, false)
	s.srv = &http.Server{Handler: withTail(mux), ReadHeaderTimeout: 30 * time.Second}
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	log := logging.FromContext(ctx)
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	log.Info("kubelet API listening", "addr", s.ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(shutdown)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		return err
	}
}
