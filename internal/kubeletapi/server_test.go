package kubeletapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/remote-build-nodes/rbn/provider"
)

// fakeAuth knows one bearer token and allows its user on one node.
type fakeAuth struct {
	node string

	mu    sync.Mutex
	asked []authorizer.Attributes
}

func (f *fakeAuth) AuthenticateRequest(r *http.Request) (*authenticator.Response, bool, error) {
	if r.Header.Get("Authorization") != "Bearer good" {
		return nil, false, nil
	}
	return &authenticator.Response{User: &user.DefaultInfo{Name: "alice"}}, true, nil
}

func (f *fakeAuth) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, a)
	if a.GetName() == f.node {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func (f *fakeAuth) last() authorizer.Attributes {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.asked) == 0 {
		return nil
	}
	return f.asked[len(f.asked)-1]
}

type noPods struct{}

func (noPods) Resolve(string, string) (*provider.Pods, bool) { return nil, false }
func (noPods) Node(string) (*provider.Pods, bool)            { return nil, false }

func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rbn-kubelet"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func freePorts(t *testing.T, n int) []int32 {
	t.Helper()
	var out []int32
	var lns []net.Listener
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		out = append(out, int32(ln.Addr().(*net.TCPAddr).Port))
	}
	for _, ln := range lns {
		ln.Close()
	}
	return out
}

// Node routes are told apart by the port they arrive on; pod routes by
// their pod; nothing passes without a caller the authenticator knows.
func TestServerRoutesByPortAndAuthenticates(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	ports := freePorts(t, 2)
	auth := &fakeAuth{node: "n1"}
	// A one-port range per test run: free ports are not contiguous.
	srv, err := New(Config{
		ListenAddress: "127.0.0.1", Port: ports[0], NodePortFirst: ports[1], NodePortLast: ports[1],
		CertFile: certFile, KeyFile: keyFile, Resolver: noPods{}, Auth: auth,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Acquired before Run: served once Run starts.
	p1, err := srv.Acquire("n1", 0)
	if err != nil || p1 != ports[1] {
		t.Fatalf("acquire n1: %d, %v", p1, err)
	}
	if _, err := srv.Acquire("n2", 0); err == nil {
		t.Fatal("a second node got a port from a one-port range")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	get := func(port int32, method, path, token string) (int, string) {
		t.Helper()
		var body string
		var code int
		deadline := time.Now().Add(5 * time.Second)
		for {
			req, _ := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), nil)
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := client.Do(req)
			if err != nil {
				if time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond) // Run is starting
					continue
				}
				t.Fatalf("%s %s: %v", method, path, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body, code = string(b), resp.StatusCode
			return code, body
		}
	}

	if code, body := get(ports[0], "GET", "/healthz", ""); code != 200 || body != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	for _, path := range []string{"/stats/summary", "/metrics/resource", "/containerLogs/ns/p/c"} {
		if code, _ := get(p1, "GET", path, ""); code != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s: %d, want 401", path, code)
		}
		if code, _ := get(p1, "GET", path, "bad"); code != http.StatusUnauthorized {
			t.Errorf("bad token GET %s: %d, want 401", path, code)
		}
	}
	if code, _ := get(ports[0], "POST", "/exec/ns/p/c?command=id&output=1", ""); code != http.StatusUnauthorized {
		t.Errorf("anonymous exec: %d, want 401", code)
	}
	code, body := get(ports[0], "GET", "/stats/summary", "good")
	if code != http.StatusNotFound || !strings.Contains(body, "own kubelet port") {
		t.Errorf("node route on the shared port: %d %q", code, body)
	}
	code, body = get(p1, "GET", "/stats/summary", "good")
	if a := auth.last(); a == nil || a.GetName() != "n1" || a.GetSubresource() != "stats" || a.GetVerb() != "get" {
		t.Errorf("node route on n1's port authorized as %+v", a)
	}
	if code != http.StatusNotFound || !strings.Contains(body, "node n1") {
		t.Errorf("summary of an unserved n1: %d %q", code, body)
	}
	code, body = get(ports[0], "GET", "/containerLogs/ns/p/c", "good")
	if code != http.StatusNotFound || !strings.Contains(body, "ns/p") {
		t.Errorf("logs of an unknown pod: %d %q", code, body)
	}
	code, _ = get(p1, "GET", "/containerLogs/ns/p/c", "good")
	if code != http.StatusNotFound {
		t.Errorf("logs of an unknown pod on n1's port: %d", code)
	}
	if code, _ := get(p1, "GET", "/metrics/cadvisor", "good"); code != http.StatusNotImplemented {
		t.Errorf("cadvisor metrics: %d, want 501", code)
	}

	// A node the caller may not see.
	auth.node = "other"
	if code, body := get(p1, "GET", "/metrics/resource", "good"); code != http.StatusForbidden || !strings.Contains(body, "alice") {
		t.Errorf("forbidden caller: %d %q", code, body)
	}

	srv.Release("n1")
	if _, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p1), time.Second); err == nil {
		t.Error("n1's port still accepts connections after release")
	}
	// Acquired while running: served at once. The client's keep-alive
	// connection, accepted by n1's listener, now speaks for n2: the port decides.
	if p, err := srv.Acquire("n2", 0); err != nil || p != ports[1] {
		t.Fatalf("acquire n2 after n1's release: %d, %v", p, err)
	}
	auth.node = "n2"
	if code, body := get(ports[1], "GET", "/stats/summary", "good"); code != http.StatusNotFound || !strings.Contains(body, "node n2") {
		t.Errorf("summary on n2's port: %d %q", code, body)
	}
}
