// Package servingcert serves a TLS certificate from files that are read
// again when they change (a renewed certificate, a Secret volume updated by
// the kubelet), without a restart: the kubelet API's and rbn-extender's.
package servingcert

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// Cert is a serving certificate read again when its files change:
// apiserver's dynamic certificate content watches the files (fsnotify, and
// once a minute) and keeps the last pair that loaded, so a half-written
// pair never replaces a good one.
type Cert struct {
	content *dynamiccertificates.DynamicCertKeyPairContent

	mu   sync.Mutex
	pem  []byte // the certificate PEM cert was parsed from
	cert *tls.Certificate
}

// New loads the pair, failing when it does not load; name says whose it is
// in errors and logs.
func New(name, certFile, keyFile string) (*Cert, error) {
	content, err := dynamiccertificates.NewDynamicServingContentFromFiles(name, certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	sc := &Cert{content: content}
	if _, err := sc.current(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return sc, nil
}

// Run watches the files until ctx ends.
func (sc *Cert) Run(ctx context.Context) { sc.content.Run(ctx, 1) }

// current is the pair as last loaded, parsed once per change.
func (sc *Cert) current() (*tls.Certificate, error) {
	certPEM, keyPEM := sc.content.CurrentCertKeyContent()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.cert != nil && string(certPEM) == string(sc.pem) {
		return sc.cert, nil
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if sc.cert != nil {
			return sc.cert, nil // keep serving the last good pair
		}
		return nil, err
	}
	sc.pem, sc.cert = certPEM, &cert
	return sc.cert, nil
}

// GetCertificate is tls.Config.GetCertificate.
func (sc *Cert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return sc.current()
}
