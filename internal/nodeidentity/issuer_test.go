package nodeidentity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"

	"github.com/remote-build-nodes/rbn/internal/testnet"
	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// testCA signs what the fake cluster's kubelet client signer signs.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// sign issues the request's certificate for lifetime, with its DNS names
// and IP addresses, as the signer would.
func (ca *testCA) sign(t *testing.T, request []byte, lifetime time.Duration, serial int64, usage x509.ExtKeyUsage) []byte {
	t.Helper()
	block, _ := pem.Decode(request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Error(err)
		return nil
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: req.Subject, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(lifetime), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: req.DNSNames, IPAddresses: req.IPAddresses}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, req.PublicKey, ca.key)
	if err != nil {
		t.Error(err)
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// fakeSigningCluster is a fake clientset whose CSRs get names and UIDs on
// creation, as the apiserver gives them, and are approved and signed by ca
// at once: for server auth with the kubelet-serving signer, else for
// client auth. Signed on creation, not by a watcher as they come: the
// fake's watch does not resume from a list's resourceVersion, so a request
// signed between the certificate manager's list and watch of it would
// never be seen signed.
func fakeSigningCluster(t *testing.T, ca *testCA) *fake.Clientset {
	client := fake.NewClientset()
	var n atomic.Int64
	client.PrependReactor("create", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		csr := a.(k8stesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest)
		i := n.Add(1)
		if csr.Name == "" {
			csr.Name = fmt.Sprintf("%s%d", csr.GenerateName, i)
		}
		csr.UID = types.UID(fmt.Sprint("uid-", i))
		usage := x509.ExtKeyUsageClientAuth
		if csr.Spec.SignerName == certificatesv1.KubeletServingSignerName {
			usage = x509.ExtKeyUsageServerAuth
		}
		csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
		csr.Status.Certificate = ca.sign(t, csr.Spec.Request, time.Duration(*csr.Spec.ExpirationSeconds)*time.Second, i+1, usage)
		return false, nil, nil
	})
	// The fake ignores field selectors, but the certificate manager waits
	// for its request by name (metadata.name), and takes another request
	// of the cluster's for its own changing UID: list and watch by name
	// filter, as the apiserver does.
	gvr := certificatesv1.SchemeGroupVersion.WithResource("certificatesigningrequests")
	client.PrependReactor("list", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		name, ok := a.(k8stesting.ListAction).GetListRestrictions().Fields.RequiresExactMatch("metadata.name")
		if !ok {
			return false, nil, nil
		}
		obj, err := client.Tracker().List(gvr, certificatesv1.SchemeGroupVersion.WithKind("CertificateSigningRequest"), "")
		if err != nil {
			return true, nil, err
		}
		l := obj.(*certificatesv1.CertificateSigningRequestList)
		l.Items = slices.DeleteFunc(l.Items, func(csr certificatesv1.CertificateSigningRequest) bool { return csr.Name != name })
		return true, l, nil
	})
	client.PrependWatchReactor("certificatesigningrequests", func(a k8stesting.Action) (bool, watch.Interface, error) {
		name, ok := a.(k8stesting.WatchAction).GetWatchRestrictions().Fields.RequiresExactMatch("metadata.name")
		if !ok {
			return false, nil, nil
		}
		w, err := client.Tracker().Watch(gvr, "")
		if err != nil {
			return true, nil, err
		}
		return true, watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
			csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			return ev, ok && csr.Name == name
		}), nil
	})
	return client
}

// An apiserver stand-in that requires a client certificate of ca's and
// answers with the common name it saw.
func clientCertServer(t *testing.T, ca *testCA) *httptest.Server {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprint(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// A node's identity: its certificate requested with the kubelet client
// signer, for the node's user and group, for the lifetime asked, and
// presented on the node's client connections once issued.
func TestIssuerKeepsANodesIdentity(t *testing.T) {
	ca := newTestCA(t)
	client := fakeSigningCluster(t, ca)
	srv := clientCertServer(t, ca)
	base := &rest.Config{Host: srv.URL, BearerToken: "rbn-kubelet's token", TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}}
	is := NewIssuer(IssuerConfig{Base: base, Requester: client, Lifetime: 12 * time.Hour})

	cfg, release, err := is.For("build-1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if cfg.BearerToken != "" {
		t.Error("the node's client configuration keeps rbn-kubelet's token")
	}
	if err := is.Ready(t.Context(), "build-1"); err != nil {
		t.Fatal(err)
	}
	csrs, err := client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil || len(csrs.Items) != 1 {
		t.Fatalf("%d requests (%v), want 1", len(csrs.Items), err)
	}
	spec := csrs.Items[0].Spec
	block, _ := pem.Decode(spec.Request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName || req.Subject.CommonName != "system:node:build-1" ||
		len(req.Subject.Organization) != 1 || req.Subject.Organization[0] != "system:nodes" || spec.ExpirationSeconds == nil || *spec.ExpirationSeconds != 12*3600 {
		t.Errorf("request: signer %s, subject %v, lifetime %v", spec.SignerName, req.Subject, spec.ExpirationSeconds)
	}
	// And it passes Decide.
	csr := csrs.Items[0].DeepCopy()
	csr.Spec.Username = requester
	if v := Decide(Policy{Requester: requester, MaxLifetime: DefaultLifetime}, csr, fakeNodes{rbns: map[string]bool{"build-1": true}}); v.Decision != Approve {
		t.Errorf("the issuer's request: %+v", v)
	}

	rc, err := rest.RESTClientFor(withSerializer(cfg))
	if err != nil {
		t.Fatal(err)
	}
	body, err := rc.Get().AbsPath("/whoami").DoRaw(t.Context())
	if err != nil || string(body) != "system:node:build-1" {
		t.Errorf("the server saw %q (%v), want system:node:build-1", body, err)
	}

	// A second user of the node shares the identity; it is kept until both
	// released it.
	_, release2, err := is.For("build-1")
	if err != nil {
		t.Fatal(err)
	}
	release2()
	if err := is.Ready(t.Context(), "build-1"); err != nil {
		t.Errorf("released by one of two users: %v", err)
	}
	if n := len(mustList(t, client).Items); n != 1 {
		t.Errorf("%d requests after a second user, want still 1", n)
	}
	release()
	release() // twice is once
	if err := is.Ready(t.Context(), "build-1"); err == nil {
		t.Error("still kept after every user released it")
	}
}

// A node's serving certificate: requested of the kubelet-serving signer
// once the node's address is known, for the node's user and group, name
// and address, presented by get to clients that verify that address; a new
// address gets a new certificate.
func TestIssuerKeepsANodesServingCertificate(t *testing.T) {
	ca := newTestCA(t)
	client := fakeSigningCluster(t, ca)
	is := NewIssuer(IssuerConfig{Requester: client, Lifetime: 12 * time.Hour})
	var addr atomic.Pointer[net.IP]
	ip := func() net.IP {
		if p := addr.Load(); p != nil {
			return *p
		}
		return nil
	}

	get, release, err := is.Serving("build-1", ip)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if c, err := get(nil); !errors.Is(err, ErrNoServingCertificate) {
		t.Errorf("before any was issued: certificate %v, error %v; want ErrNoServingCertificate", c, err)
	}
	first := net.ParseIP("10.96.0.21")
	addr.Store(&first)
	if err := is.ServingReady(t.Context(), "build-1"); err != nil {
		t.Fatal(err)
	}
	// Nothing was requested before the address was known: the one request
	// is for it.
	csrs := mustList(t, client).Items
	if len(csrs) != 1 {
		t.Fatalf("%d requests, want 1", len(csrs))
	}
	spec := csrs[0].Spec
	block, _ := pem.Decode(spec.Request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if spec.SignerName != certificatesv1.KubeletServingSignerName || req.Subject.CommonName != "system:node:build-1" ||
		!slices.Equal(req.Subject.Organization, []string{"system:nodes"}) || !slices.Equal(req.DNSNames, []string{"build-1"}) ||
		len(req.IPAddresses) != 1 || !req.IPAddresses[0].Equal(first) ||
		!slices.Contains(spec.Usages, certificatesv1.UsageServerAuth) || spec.ExpirationSeconds == nil || *spec.ExpirationSeconds != 12*3600 {
		t.Errorf("request: signer %s, subject %v, DNS names %q, IP addresses %v, usages %q, lifetime %v",
			spec.SignerName, req.Subject, req.DNSNames, req.IPAddresses, spec.Usages, spec.ExpirationSeconds)
	}
	// And it passes Decide.
	csr := csrs[0].DeepCopy()
	csr.Spec.Username = requester
	nodes := fakeNodes{rbns: map[string]bool{"build-1": true}, serviceIPs: map[string]string{"build-1": "10.96.0.21"}}
	if v := Decide(Policy{Requester: requester, MaxLifetime: DefaultLifetime}, csr, nodes); v.Decision != Approve {
		t.Errorf("the issuer's request: %+v", v)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	if err := handshake(t, get, pool, "10.96.0.21"); err != nil {
		t.Errorf("a client that verifies 10.96.0.21: %v", err)
	}

	// The Service was made anew, with another ClusterIP: the manager sees
	// its template change within a second (no sleep here: a wait on the
	// certificate, with testwait's deadline).
	second := net.ParseIP("10.96.0.99")
	addr.Store(&second)
	testwait.Eventually(t, "a certificate for 10.96.0.99", func() bool {
		c, err := get(nil)
		return err == nil && len(c.Leaf.IPAddresses) == 1 && c.Leaf.IPAddresses[0].Equal(second)
	})
	if err := handshake(t, get, pool, "10.96.0.99"); err != nil {
		t.Errorf("a client that verifies 10.96.0.99: %v", err)
	}
	if err := handshake(t, get, pool, "10.96.0.21"); err == nil {
		t.Error("the old address still verifies")
	}

	// A second user shares the certificate; it is kept until both released
	// it.
	_, release2, err := is.Serving("build-1", ip)
	if err != nil {
		t.Fatal(err)
	}
	release2()
	if err := is.ServingReady(t.Context(), "build-1"); err != nil {
		t.Errorf("released by one of two users: %v", err)
	}
	if n := len(mustList(t, client).Items); n != 2 {
		t.Errorf("%d requests after a second user, want still 2", n)
	}
	release()
	release() // twice is once
	if err := is.ServingReady(t.Context(), "build-1"); err == nil {
		t.Error("still kept after every user released it")
	}
	// The client identity is kept apart.
	if err := is.Ready(t.Context(), "build-1"); err == nil {
		t.Error("a serving certificate kept as the node's identity")
	}
}

// handshake is a TLS handshake with a server presenting get's certificate,
// by a client that trusts pool and verifies serverName. Over TCP, not
// net.Pipe: a client's alert and the server's flight would each wait for
// the other to be read.
func handshake(t *testing.T, get func(*tls.ClientHelloInfo) (*tls.Certificate, error), pool *x509.CertPool, serverName string) error {
	t.Helper()
	c, s := testnet.TCPPair(t)
	defer c.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer s.Close()
		_ = tls.Server(s, &tls.Config{GetCertificate: get}).HandshakeContext(t.Context())
	}()
	err := tls.Client(c, &tls.Config{RootCAs: pool, ServerName: serverName}).HandshakeContext(t.Context())
	_ = c.Close()
	<-done
	return err
}

func mustList(t *testing.T, client *fake.Clientset) *certificatesv1.CertificateSigningRequestList {
	t.Helper()
	l, err := client.CertificatesV1().CertificateSigningRequests().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func withSerializer(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	return c
}

// The store presents a certificate as soon as Update closed issued (what
// Ready and ServingReady wait for), without the manager, which caches it
// only after Update returned; an expired one is not presented.
func TestMemoryStorePresentsWhatIsIssued(t *testing.T) {
	ca := newTestCA(t)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:build-1"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := ca.sign(t, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr}), time.Hour, 2, x509.ExtKeyUsageServerAuth)
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})

	s := newMemoryStore()
	if c := s.valid(time.Now()); c != nil {
		t.Errorf("before any was issued: %v", c.Leaf.Subject)
	}
	if _, err := s.Update(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.issued:
	default:
		t.Fatal("issued is not closed after the first Update")
	}
	c := s.valid(time.Now())
	if c == nil || c.Leaf.Subject.CommonName != "system:node:build-1" {
		t.Errorf("right after it was issued: %v", c)
	}
	if c := s.valid(time.Now().Add(2 * time.Hour)); c != nil {
		t.Errorf("after it expired: presented, until %v", c.Leaf.NotAfter)
	}
}
