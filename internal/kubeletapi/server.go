// Package kubeletapi is the kubelet API (logs, exec, attach, port-forward,
// stats, metrics) of every node of the process, over HTTPS, with callers
// authenticated and authorized as kubelet does it.
//
// One http.Server serves a shared port and one port per node (see
// ports.go for why). Pod routes carry namespace and pod name, which resolve
// to the node running the pod through an informer's pod index: any node's
// pods on the shared port, its own on a node's port. Node routes
// (/stats/summary, /metrics, /metrics/resource, /metrics/cadvisor, /pods,
// /runningpods/) are answered on a node's own port only. What serves a
// node comes as NodeHandlers (function fields): this package knows no
// provider.
package kubeletapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"

	corev1listers "k8s.io/client-go/listers/core/v1"

	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/servingcert"
)

// Config configures the server.
type Config struct {
	ListenAddress string
	// Port is the shared port: pod routes of every node.
	Port int32
	// NodePortFirst and NodePortLast bound the ports nodes get (inclusive).
	NodePortFirst, NodePortLast int32
	CertFile                    string
	KeyFile                     string
	// ClientCAFile, when set, lets clients (the apiserver) authenticate with
	// a certificate it signed; clients may present a bearer token instead.
	ClientCAFile string
	// Pods lists pods from an informer's cache: a pod's spec.nodeName says
	// which node a pod route is for. Required.
	Pods corev1listers.PodLister
	// Handlers returns the handlers of a node this process serves. Required.
	Handlers func(node string) (*NodeHandlers, bool)
	// Auth authenticates and authorizes callers (see NewWebhookAuth). Required.
	Auth Auth
	// Ready says whether the process can serve nodes yet (its caches have
	// synced), for GET /readyz (its readiness probe): nil when it can, else
	// why not. Nil: always ready.
	Ready func() error
	// StreamIdleTimeout closes exec, attach and port-forward sessions idle
	// this long: kubelet's default (4h), so long debug sessions stay up.
	StreamIdleTimeout time.Duration
	// StreamCreationTimeout bounds how long a client takes to open the
	// streams of a session. Default 30s, as kubelet.
	StreamCreationTimeout time.Duration
}

// Server is the kubelet API.
type Server struct {
	cfg    Config
	tls    *tls.Config
	cert   *servingcert.Cert // reloaded when its files change
	srv    *http.Server
	shared net.Listener
	// sharedPort is the shared listener's port (Port, or the one the
	// system chose for Port 0).
	sharedPort int32
	ports      *nodePorts

	mu sync.Mutex
	// nodeCerts are the nodes' own serving certificates (ServeCertificate).
	nodeCerts map[string]CertificateFunc
	running   bool            // Run serves
	done      bool            // Run ended
	log       *slog.Logger    // Run's
	pending   []*nodeListener // acquired before Run
}

// New loads the certificates and binds the shared port, so that a bad
// configuration fails at start.
func New(cfg Config) (*Server, error) {
	if cfg.StreamIdleTimeout == 0 {
		cfg.StreamIdleTimeout = 4 * time.Hour
	}
	if cfg.StreamCreationTimeout == 0 {
		cfg.StreamCreationTimeout = 30 * time.Second
	}
	if cfg.Auth == nil {
		return nil, errors.New("kubelet API: no authenticator/authorizer: anonymous access is never allowed")
	}
	if cfg.Pods == nil || cfg.Handlers == nil {
		return nil, errors.New("kubelet API: no pod index or node handlers")
	}
	if cfg.NodePortFirst <= 0 || cfg.NodePortLast < cfg.NodePortFirst {
		return nil, fmt.Errorf("kubelet API: invalid node port range %d-%d", cfg.NodePortFirst, cfg.NodePortLast)
	}
	cert, err := servingcert.New("kubelet API serving certificate", cfg.CertFile, cfg.KeyFile)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, cert: cert, nodeCerts: map[string]CertificateFunc{}}
	tlsCfg := &tls.Config{GetCertificate: s.certificate, MinVersion: tls.VersionTLS12}
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
		// Not Require: bearer-token callers (metrics-server, say) present none.
		tlsCfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	s.tls = tlsCfg
	ln, err := s.listen(cfg.Port)
	if err != nil {
		return nil, err
	}
	s.shared = tls.NewListener(ln, s.tls)
	s.sharedPort = int32(ln.Addr().(*net.TCPAddr).Port)
	s.ports = newNodePorts(cfg.NodePortFirst, cfg.NodePortLast, s.listen,
		func(l net.Listener) net.Listener { return tls.NewListener(l, s.tls) })
	s.srv = &http.Server{Handler: s.handler(), ReadHeaderTimeout: 30 * time.Second}
	return s, nil
}

func (s *Server) listen(port int32) (net.Listener, error) {
	addr := net.JoinHostPort(s.cfg.ListenAddress, strconv.Itoa(int(port)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("kubelet API listen on %s: %w", addr, err)
	}
	return ln, nil
}

// CertificateFunc returns a serving certificate for a handshake; nil with
// no error: none yet.
type CertificateFunc = func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// ServeCertificate makes node's own port present get's certificate (the
// node's own, config nodeServices) instead of the shared one, until
// release; while get has none, the shared one is presented.
func (s *Server) ServeCertificate(node string, get CertificateFunc) (release func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nodeCerts[node] = get
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			delete(s.nodeCerts, node)
		})
	}
}

// certificate presents the certificate of the node whose port the
// connection came in on, if it has one of its own, else the shared one.
func (s *Server) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if tcp, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok && int32(tcp.Port) != s.sharedPort {
		if node, ok := s.ports.nodeAt(int32(tcp.Port)); ok {
			s.mu.Lock()
			get := s.nodeCerts[node]
			s.mu.Unlock()
			if get != nil {
				if c, err := get(hello); c != nil || err != nil {
					return c, err
				}
			}
		}
	}
	return s.cert.GetCertificate(hello)
}

// Addr is the shared listener's address.
func (s *Server) Addr() net.Addr { return s.shared.Addr() }

// nodeOf says which node a request is for, from the port it came in on:
// shared is true for the shared port; node is "" for a port no node holds
// (any more: a keep-alive connection can outlive its node's listener, and
// the port then belongs to whichever node holds it now, as it does for the
// apiserver, which dials a node's advertised port).
func (s *Server) nodeOf(ctx context.Context) (node string, shared bool) {
	addr, _ := ctx.Value(http.LocalAddrContextKey).(net.Addr)
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return "", false
	}
	port := int32(tcp.Port)
	if port == s.sharedPort {
		return "", true
	}
	node, _ = s.ports.nodeAt(port)
	return node, false
}

// Acquire gives a node its own port and serves it: preferred (the port its
// Node advertised so far) when free, else the lowest free one of the range.
// Calling it again for a node returns the same port.
func (s *Server) Acquire(node string, preferred int32) (int32, error) {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	if done {
		return 0, errors.New("kubelet API stopped")
	}
	l, fresh, err := s.ports.acquire(node, preferred)
	if err != nil {
		return 0, err
	}
	if fresh {
		s.mu.Lock()
		running, log := s.running, s.log
		if !running {
			s.pending = append(s.pending, l)
		}
		s.mu.Unlock()
		if running {
			go s.serve(log, l)
		}
	}
	return l.port, nil
}

// Release stops serving a node's port. The sessions (exec, attach,
// port-forward, followed logs) open on it stay up: the node may be served
// again at once on the same port (a restart of its runtime).
func (s *Server) Release(node string) {
	s.ports.release(node)
}

// EndSessions closes every connection made to a node's port, released or
// not: the node is no longer served here (another replica holds it now),
// so its exec, attach, port-forward and log sessions end, and their
// clients reconnect through the apiserver to the node's new server. It
// returns how many connections it closed.
func (s *Server) EndSessions(node string) int {
	return s.ports.endSessions(node)
}

func (s *Server) serve(log *slog.Logger, l net.Listener) {
	profiled()
	err := s.srv.Serve(l)
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		log.Error("kubelet API listener failed", "addr", l.Addr().String(), "err", err)
	}
}

// ProfileLabel is the pprof label that marks, in rbn-kubelet's CPU profiles,
// everything the kubelet API server does (value ProfileComponent): its
// connections (TLS handshakes included), the requests on them and the work
// they start in goroutines of their own, such as a host's shared stats read
// or its /proc sampler, which run for the scrapes. Goroutines inherit the
// labels of the one that starts them: the serving goroutines are labelled
// before they accept. So what serving Prometheus, metrics-server or kubectl
// costs can be told from the rest of rbn-kubelet (make bench's scrape cost).
const (
	ProfileLabel     = "rbn_component"
	ProfileComponent = "kubelet-api"
)

// profiled labels the calling goroutine, and so every goroutine it starts
// from now on, as the kubelet API server's (ProfileLabel).
func profiled() {
	pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels(ProfileLabel, ProfileComponent)))
}

// Run serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	log := logging.FromContext(ctx)
	// Set before any Serve: requests carry Run's context (its logger).
	s.srv.BaseContext = func(net.Listener) context.Context { return ctx }
	// TLS handshake failures (scanners, wrong CA) are debug noise.
	s.srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelDebug)
	s.mu.Lock()
	s.running, s.log = true, log
	pending := s.pending
	s.pending = nil
	s.mu.Unlock()
	for _, l := range pending {
		go s.serve(log, l)
	}
	go s.cert.Run(ctx)
	errc := make(chan error, 1)
	go func() {
		profiled()
		errc <- s.srv.Serve(s.shared)
	}()
	log.Info("kubelet API listening", "addr", s.shared.Addr().String(),
		"nodePorts", fmt.Sprintf("%d-%d", s.cfg.NodePortFirst, s.cfg.NodePortLast))
	defer func() {
		s.mu.Lock()
		s.running, s.done = false, true
		s.mu.Unlock()
		for _, l := range s.ports.all() {
			s.Release(l.node)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		err := s.srv.Shutdown(shutdown)
		// A node listener released (closed) while its Serve had not yet
		// returned is closed again by Shutdown: not a shutdown failure.
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
			err = nil
		}
		return err
	}
}
