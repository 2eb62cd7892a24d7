package kubeletapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/remote-build-nodes/rbn/internal/testcert"
	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// fakeAuth knows one bearer token and allows its user on one node ("*": all).
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
	if a.GetName() == f.node || f.node == "*" {
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

// podIndex is an informer's pod cache holding pods, for Config.Pods.
func podIndex(t testing.TB, pods ...*corev1.Pod) (cache.Indexer, corev1listers.PodLister) {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, pd := range pods {
		if err := idx.Add(pd); err != nil {
			t.Fatal(err)
		}
	}
	return idx, corev1listers.NewPodLister(idx)
}

func boundPod(namespace, name, node string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}, Spec: corev1.PodSpec{NodeName: node}}
}

// noNodes serves no node.
func noNodes(string) (*NodeHandlers, bool) { return nil, false }

// testServer runs a server on a free shared port and a one-port node range
// (free ports are not contiguous) until the test ends.
type testServer struct {
	*Server
	shared, nodePort int32
	client           *http.Client
	caFile           string // the server's self-signed certificate
}

func startServer(t testing.TB, cfg Config, acquire ...string) *testServer {
	t.Helper()
	certFile, keyFile, pool := testcert.SelfSigned(t)
	ports := freePorts(t, 2)
	cfg.ListenAddress, cfg.Port, cfg.NodePortFirst, cfg.NodePortLast = "127.0.0.1", ports[0], ports[1], ports[1]
	cfg.CertFile, cfg.KeyFile = certFile, keyFile
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: srv, shared: ports[0], nodePort: ports[1],
		client: &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second},
		caFile: certFile}
	// Acquired before Run: served once Run starts.
	for _, node := range acquire {
		if p, err := srv.Acquire(node, 0); err != nil || p != ports[1] {
			t.Fatalf("acquire %s: %d, %v", node, p, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return ts
}

// get sends a request. The listeners are bound from New and Acquire on:
// a request made before Run serves waits in the listen queue.
func (ts *testServer) get(t *testing.T, port int32, method, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, fmt.Sprintf("https://127.0.0.1:%d%s", port, path), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func freePorts(t testing.TB, n int) []int32 {
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
	auth := &fakeAuth{node: "n1"}
	_, pods := podIndex(t)
	ts := startServer(t, Config{Pods: pods, Handlers: noNodes, Auth: auth}, "n1")
	ports, p1 := []int32{ts.shared, ts.nodePort}, ts.nodePort
	srv := ts.Server
	if _, err := srv.Acquire("n2", 0); err == nil {
		t.Fatal("a second node got a port from a one-port range")
	}
	get := func(port int32, method, path, token string) (int, string) {
		t.Helper()
		return ts.get(t, port, method, path, token)
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
	if code, body := get(p1, "GET", "/metrics/probes", "good"); code != http.StatusNotFound || !strings.Contains(body, "node n1") {
		t.Errorf("probe metrics of an unserved n1: %d %q, want 404 as its other node routes", code, body)
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

// /healthz and /readyz answer anonymous probes; /readyz says why the
// process is not ready yet.
func TestProbes(t *testing.T) {
	_, pods := podIndex(t)
	var ready atomic.Bool
	ts := startServer(t, Config{Pods: pods, Handlers: noNodes, Auth: &fakeAuth{node: "n1"}, Ready: func() error {
		if !ready.Load() {
			return errors.New("caches not synced")
		}
		return nil
	}}, "n1")
	if code, body := ts.get(t, ts.shared, "GET", "/healthz", ""); code != http.StatusOK || body != "ok" {
		t.Errorf("healthz: %d %q", code, body)
	}
	if code, body := ts.get(t, ts.shared, "GET", "/readyz", ""); code != http.StatusServiceUnavailable || !strings.Contains(body, "caches not synced") {
		t.Errorf("readyz before ready: %d %q, want 503 with the reason", code, body)
	}
	ready.Store(true)
	if code, body := ts.get(t, ts.shared, "GET", "/readyz", ""); code != http.StatusOK || body != "ok" {
		t.Errorf("readyz once ready: %d %q", code, body)
	}
}

// The serving certificate is read again when its files change (a renewed
// certificate, an updated Secret volume): new connections get the new one
// without a restart.
func TestServingCertificateReloads(t *testing.T) {
	_, pods := podIndex(t)
	nodes := &servedNodes{m: map[string]*NodeHandlers{}}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}})
	served := func() []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ts.shared), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	leaf := func(certFile string) []byte {
		t.Helper()
		block, _ := pem.Decode([]byte(readTestFile(t, certFile)))
		return block.Bytes
	}
	if !bytes.Equal(served(), leaf(ts.caFile)) {
		t.Fatal("the server does not serve its certificate file's certificate")
	}
	// A new pair, moved over the old files as a Secret volume update does.
	want := testcert.Replace(t, ts.caFile, strings.TrimSuffix(ts.caFile, "tls.crt")+"tls.key")
	testwait.Eventually(t, "the new certificate served", func() bool { return bytes.Equal(served(), want) })
}

func readTestFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A node with a certificate of its own (config nodeServices) presents it on
// its port, and only there; before it has one, and after release, the
// shared certificate serves.
func TestNodeCertificateOnItsPortOnly(t *testing.T) {
	_, pods := podIndex(t)
	nodes := &servedNodes{m: map[string]*NodeHandlers{}}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}}, "n1")
	served := func(port int32) []byte {
		t.Helper()
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	sharedLeaf := served(ts.shared)
	nodeCertFile, nodeKeyFile, _ := testcert.SelfSigned(t)
	own, err := tls.LoadX509KeyPair(nodeCertFile, nodeKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	var issued atomic.Bool
	release := ts.ServeCertificate("n1", func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if !issued.Load() {
			return nil, nil
		}
		return &own, nil
	})
	if !bytes.Equal(served(ts.nodePort), sharedLeaf) {
		t.Error("before the node's certificate is issued, its port does not present the shared one")
	}
	issued.Store(true)
	if !bytes.Equal(served(ts.nodePort), own.Certificate[0]) {
		t.Error("the node's port does not present the node's certificate")
	}
	if !bytes.Equal(served(ts.shared), sharedLeaf) {
		t.Error("the shared port presents a node's certificate")
	}
	release()
	if !bytes.Equal(served(ts.nodePort), sharedLeaf) {
		t.Error("after release, the node's port does not present the shared certificate")
	}
}
