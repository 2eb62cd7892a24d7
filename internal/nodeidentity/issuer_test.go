package nodeidentity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
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

// sign issues the request's certificate for lifetime, as the signer would.
func (ca *testCA) sign(t *testing.T, request []byte, lifetime time.Duration, serial int64, usage x509.ExtKeyUsage) []byte {
	t.Helper()
	block, _ := pem.Decode(request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Error(err)
		return nil
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: req.Subject, NotBefore: time.Now().Add(-time.Minute),
		NotAfter: time.Now().Add(lifetime), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, req.PublicKey, ca.key)
	if err != nil {
		t.Error(err)
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// fakeSigningCluster is a fake clientset whose CSRs get names and UIDs on
// creation, as the apiserver gives them, and are approved and signed by ca
// as they come.
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
		return false, nil, nil
	})
	w, err := client.CertificatesV1().CertificateSigningRequests().Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		var serial int64 = 1
		for ev := range w.ResultChan() {
			csr, ok := ev.Object.(*certificatesv1.CertificateSigningRequest)
			if ev.Type != watch.Added || !ok {
				continue
			}
			serial++
			csr = csr.DeepCopy()
			csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
			csr.Status.Certificate = ca.sign(t, csr.Spec.Request, time.Duration(*csr.Spec.ExpirationSeconds)*time.Second, serial, x509.ExtKeyUsageClientAuth)
			if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateStatus(t.Context(), csr, metav1.UpdateOptions{}); err != nil {
				t.Error(err)
			}
		}
	}()
	t.Cleanup(w.Stop)
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
