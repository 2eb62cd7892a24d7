package kubeletapi

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"k8s.io/apiserver/pkg/server/dynamiccertificates"
)

// servingCert is the kubelet API's serving certificate, read again when
// its files change (a renewed certificate, a Secret volume updated by the
// kubelet), without a restart: apiserver's dynamic certificate content
// watches the files (fsnotify, and once a minute) and keeps the last pair
// that loaded, so a half-written pair never replaces a good one.
type servingCert struct {
	content *dynamiccertificates.DynamicCertKeyPairContent

	mu     sync.Mutex
	pem    []byte // the certificate PEM cert was parsed from
	cert   *tls.Certificate
	parsed int // how many pairs were parsed (for tests)
}

// newServingCert loads the pair, failing when it does not load.
func newServingCert(certFile, keyFile string) (*servingCert, error) {
	content, err := dynamiccertificates.NewDynamicServingContentFromFiles("kubelet-api-serving", certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("kubelet API serving certificate: %w", err)
	}
	sc := &servingCert{content: content}
	if _, err := sc.current(); err != nil {
		return nil, fmt.Errorf("kubelet API serving certificate: %w", err)
	}
	return sc, nil
}

// run watches the files until ctx ends.
func (sc *servingCert) run(ctx context.Context) { sc.content.Run(ctx, 1) }

// current is the pair as last loaded, parsed once per change.
func (sc *servingCert) current() (*tls.Certificate, error) {
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
	sc.parsed++
	return sc.cert, nil
}

// getCertificate is tls.Config.GetCertificate.
func (sc *servingCert) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return sc.current()
}
