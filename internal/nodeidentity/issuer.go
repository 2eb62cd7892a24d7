package nodeidentity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/certificate"
	"k8s.io/client-go/util/connrotation"
)

// DefaultLifetime is the lifetime a node's certificate is asked for; it is
// renewed at 70 to 90% of it, as a kubelet's.
const DefaultLifetime = 24 * time.Hour

// IssuerConfig configures an Issuer.
type IssuerConfig struct {
	// Base is rbn-kubelet's client configuration: the apiserver's address
	// and CA are kept, its credentials dropped.
	Base *rest.Config
	// Requester is rbn-kubelet's own client, which requests the
	// certificates.
	Requester kubernetes.Interface
	// Lifetime asked for each certificate; DefaultLifetime when 0.
	Lifetime time.Duration
}

// Issuer keeps a client certificate for each node rbn-kubelet serves,
// requested of the cluster's kubelet client signer and renewed before it
// expires by client-go's certificate manager, as a kubelet keeps its own;
// and a serving certificate for each node's kubelet API (Serving).
type Issuer struct {
	cfg   IssuerConfig
	mu    sync.Mutex
	nodes map[string]*identity
	// serving holds the serving certificates, by node.
	serving map[string]*identity
}

// identity is one certificate kept for a node, while it has users.
type identity struct {
	mgr   certificate.Manager
	store *memoryStore
	// conns are the client connections that present the certificate;
	// nil for a serving certificate.
	conns *connrotation.ConnectionTracker
	refs  int
}

// NewIssuer makes an Issuer.
func NewIssuer(cfg IssuerConfig) *Issuer {
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultLifetime
	}
	return &Issuer{cfg: cfg, nodes: map[string]*identity{}, serving: map[string]*identity{}}
}

// For starts keeping node's identity, if it is not kept yet, and returns a
// client configuration that authenticates as the node with its current
// certificate (until the first is issued, requests are anonymous, and
// Ready waits for it). release stops keeping it once every For of the node
// is released.
func (is *Issuer) For(node string) (cfg *rest.Config, release func(), err error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	id, release, err := is.keepLocked(is.nodes, node, func() (*identity, error) { return is.start(node) })
	if err != nil {
		return nil, nil, err
	}
	cfg, err = is.clientConfig(id)
	if err != nil {
		is.releaseLocked(is.nodes, node, id)
		return nil, nil, err
	}
	return cfg, release, nil
}

// keepLocked takes one more reference to node's certificate in kept,
// starting it if it is not kept yet; release gives the reference back
// (once, however often it is called).
func (is *Issuer) keepLocked(kept map[string]*identity, node string, start func() (*identity, error)) (id *identity, release func(), err error) {
	id = kept[node]
	if id == nil {
		if id, err = start(); err != nil {
			return nil, nil, err
		}
		kept[node] = id
	}
	id.refs++
	var once sync.Once
	return id, func() {
		once.Do(func() {
			is.mu.Lock()
			defer is.mu.Unlock()
			is.releaseLocked(kept, node, id)
		})
	}, nil
}

func (is *Issuer) releaseLocked(kept map[string]*identity, node string, id *identity) {
	if id.refs--; id.refs == 0 {
		id.mgr.Stop()
		if id.conns != nil {
			id.conns.CloseAll()
		}
		delete(kept, node)
	}
}

// Ready waits until node's identity has a certificate, or ctx ends.
func (is *Issuer) Ready(ctx context.Context, node string) error {
	return is.ready(ctx, is.nodes, node, "identity")
}

// ready waits until node's certificate in kept (what) is issued, or ctx
// ends.
func (is *Issuer) ready(ctx context.Context, kept map[string]*identity, node, what string) error {
	is.mu.Lock()
	id := kept[node]
	is.mu.Unlock()
	if id == nil {
		return fmt.Errorf("node %s: its %s is not kept", node, what)
	}
	select {
	case <-id.store.issued:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("node %s: its %s has no certificate issued yet (is rbn's approver running?): %w", node, what, ctx.Err())
	}
}

func (is *Issuer) start(node string) (*identity, error) {
	id := &identity{store: newMemoryStore(), conns: connrotation.NewConnectionTracker()}
	// A renewed certificate replaces the old one on new connections; the
	// old connections are closed, as the apiserver checks the certificate
	// of each request against the time.
	id.store.onUpdate = id.conns.CloseAll
	return is.manage(id, "certificate manager", certificate.Config{
		Template: &x509.CertificateRequest{
			Subject: pkix.Name{CommonName: UserPrefix + node, Organization: []string{Group}},
		},
		SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName,
		GetUsages:  certificate.DefaultKubeletClientGetUsages,
		Name:       "rbn-node-" + node,
	}, node)
}

// manage starts id's certificate manager with cfg, requesting with
// Requester, for the configured lifetime, into id's store.
func (is *Issuer) manage(id *identity, what string, cfg certificate.Config, node string) (*identity, error) {
	lifetime := is.cfg.Lifetime
	cfg.ClientsetFn = func(*tls.Certificate) (kubernetes.Interface, error) { return is.cfg.Requester, nil }
	cfg.RequestedCertificateLifetime = &lifetime
	cfg.CertificateStore = id.store
	mgr, err := certificate.NewManager(&cfg)
	if err != nil {
		return nil, fmt.Errorf("node %s: %s: %w", node, what, err)
	}
	id.mgr = mgr
	mgr.Start()
	return id, nil
}

// clientConfig is Base without its credentials, presenting id's current
// certificate.
func (is *Issuer) clientConfig(id *identity) (*rest.Config, error) {
	cfg := rest.AnonymousClientConfig(is.cfg.Base)
	tlsCfg, err := rest.TLSConfigFor(cfg)
	if err != nil {
		return nil, err
	}
	if tlsCfg == nil {
		return nil, errors.New("the apiserver is not reached over TLS: a node identity is a client certificate")
	}
	tlsCfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := id.store.valid(time.Now()); c != nil {
			return c, nil
		}
		return &tls.Certificate{}, nil // none yet: anonymous
	}
	dialer := connrotation.NewDialerWithTracker((&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext, id.conns)
	cfg.Transport = utilnet.SetTransportDefaults(&http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg, DialContext: dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second, MaxIdleConnsPerHost: 25,
	})
	cfg.TLSClientConfig = rest.TLSClientConfig{}
	return cfg, nil
}

// memoryStore keeps a node's certificate in memory: a restarted
// rbn-kubelet requests new ones (the old ones expire unused).
type memoryStore struct {
	mu       sync.Mutex
	cert     *tls.Certificate
	issued   chan struct{} // closed at the first certificate
	onUpdate func()
}

func newMemoryStore() *memoryStore { return &memoryStore{issued: make(chan struct{})} }

func (s *memoryStore) Current() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil {
		err := certificate.NoCertKeyError("no certificate issued yet")
		return nil, &err
	}
	return s.cert, nil
}

// valid is the stored certificate unless there is none or it expired by
// now. Presenters read it here rather than from the manager: the manager
// caches a certificate only after Update returned, so right after issued
// is closed (what Ready and ServingReady wait for), or right after onUpdate
// closed the old connections, its Current still gives nil or the old one.
func (s *memoryStore) valid(now time.Time) *tls.Certificate {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cert == nil || now.After(s.cert.Leaf.NotAfter) {
		return nil
	}
	return s.cert
}

func (s *memoryStore) Update(certPEM, keyPEM []byte) (*tls.Certificate, error) {
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
		return nil, err
	}
	s.mu.Lock()
	first := s.cert == nil
	s.cert = &c
	s.mu.Unlock()
	if first {
		close(s.issued)
	} else if s.onUpdate != nil {
		s.onUpdate()
	}
	return &c, nil
}
