package nodeidentity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	"k8s.io/client-go/util/certificate"
)

// ErrNoServingCertificate: a node's serving certificate is not issued yet
// (or has expired unrenewed), so its kubelet API has none to present.
var ErrNoServingCertificate = errors.New("no serving certificate issued yet")

// Serving starts keeping node's serving certificate, if it is not kept
// yet, and returns get, for tls.Config.GetCertificate, which presents its
// current certificate (ErrNoServingCertificate until the first is issued:
// ServingReady waits for it). release stops keeping it once every Serving of the node
// is released.
//
// ip is the node's address, its Service's ClusterIP, or nil while it is
// not known: nothing is requested meanwhile. The certificate is for user
// system:node:<node> in group system:nodes, for the node's name and ip,
// requested of the kubelet-serving signer; when ip changes, a certificate
// for the new address is requested and replaces the old one once issued.
// The ip of the Serving that starts keeping the certificate is the one
// used as long as it is kept: a later Serving's ip is not called.
func (is *Issuer) Serving(node string, ip func() net.IP) (get func(*tls.ClientHelloInfo) (*tls.Certificate, error), release func(), err error) {
	is.mu.Lock()
	defer is.mu.Unlock()
	id, release, err := is.keepLocked(is.serving, node, func() (*identity, error) { return is.startServing(node, ip) })
	if err != nil {
		return nil, nil, err
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if c := id.store.valid(time.Now()); c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("node %s: %w", node, ErrNoServingCertificate)
	}, release, nil
}

// ServingReady waits until node's serving certificate is issued, or ctx
// ends.
func (is *Issuer) ServingReady(ctx context.Context, node string) error {
	return is.ready(ctx, is.serving, node, "serving certificate")
}

// startServing starts node's serving certificate manager.
//
// What renews the certificate when the ClusterIP changes (client-go's
// util/certificate manager, v0.37): with GetTemplate, the manager checks
// the template every second, and when the current certificate no longer
// satisfies it (another common name, or a DNS name, IP address or
// organization of the template missing from the certificate; extra ones in
// the certificate do not count) and it differs (reflect.DeepEqual) from the
// template last requested, it stops waiting for the last request and wakes
// the rotation loop, which requests a certificate for the new template at
// once instead of at 70 to 90% of the current one's lifetime. So a new
// ClusterIP gets its certificate about a second plus signing later; the
// old certificate is presented until then. While the template is nil (no
// ClusterIP yet) the rotation loop requests nothing and looks again every
// second. The template is compared with reflect.DeepEqual, so one address
// must always give the same template: servingTemplate normalizes IPv4
// addresses to their 4-byte form.
func (is *Issuer) startServing(node string, ip func() net.IP) (*identity, error) {
	return is.manage(&identity{store: newMemoryStore()}, "serving certificate manager", certificate.Config{
		GetTemplate: servingTemplate(node, ip),
		SignerName:  certificatesv1.KubeletServingSignerName,
		GetUsages:   certificate.DefaultKubeletServingGetUsages,
		Name:        "rbn-node-serving-" + node,
	}, node)
}

// servingTemplate is the request for node's serving certificate at the
// current ip, nil while there is none.
func servingTemplate(node string, ip func() net.IP) func() *x509.CertificateRequest {
	return func() *x509.CertificateRequest {
		addr := ip()
		if addr == nil {
			return nil
		}
		if v4 := addr.To4(); v4 != nil {
			addr = v4
		}
		return &x509.CertificateRequest{
			Subject:     pkix.Name{CommonName: UserPrefix + node, Organization: []string{Group}},
			DNSNames:    []string{node},
			IPAddresses: []net.IP{addr},
		}
	}
}
