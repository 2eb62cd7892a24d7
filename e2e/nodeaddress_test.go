//go:build e2e

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	"github.com/remote-build-nodes/rbn/internal/nodeidentity"
)

// Every build node answers for itself where the ecosystem looks for a
// kubelet (config nodeServices, as manifests/ sets it): at
// <InternalIP>:10250, which is what Prometheus's kubelet scrape
// (prometheus-operator's kubelet Endpoints) and metrics-server dial, and
// through the apiserver's node proxy. The node presents a serving
// certificate of its own, for that address, which the cluster CA
// verifies; the answers differ per node; anonymous callers are refused.
func TestNodeAddressesAsKubelets(t *testing.T) {
	s := newInClusterStack(t)
	token := s.scraperToken(t, s.Namespace(t))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(framework.ReadFile(t, filepath.Join(s.State, "cluster", "pki", "ca.crt")))) {
		t.Fatal("no cluster CA")
	}
	var presented *x509.Certificate
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			presented = cs.PeerCertificates[0]
			return nil
		},
	}}}
	get := func(addr, path, token string) (int, string, error) {
		req, _ := http.NewRequest("GET", "https://"+addr+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	seen := map[string]string{} // address: node
	for _, name := range s.buildNodes(t) {
		n, _ := s.Node(t, name)
		addrs := internalIPs(n)
		if len(addrs) != 1 {
			t.Fatalf("node %s: InternalIP %v, want one", name, addrs)
		}
		if other, ok := seen[addrs[0]]; ok {
			t.Errorf("nodes %s and %s share InternalIP %s", name, other, addrs[0])
		}
		seen[addrs[0]] = name
		if port := n.Status.DaemonEndpoints.KubeletEndpoint.Port; port != 10250 {
			t.Errorf("node %s advertises kubelet port %d, want 10250", name, port)
		}
		addr := net.JoinHostPort(addrs[0], "10250")
		want := fmt.Sprintf("kubelet_node_name{node=%q} 1", name)
		// kube-proxy programs a new Service within a second or so.
		framework.Eventually(t, name+"'s /metrics at "+addr, 30*time.Second, func() (bool, string) {
			code, body, err := get(addr, "/metrics", token)
			if err != nil {
				return false, err.Error()
			}
			return code == 200 && strings.Contains(body, want), fmt.Sprintf("%d %s", code, tail(body, 200))
		})
		if presented.Subject.CommonName != "system:node:"+name || len(presented.IPAddresses) != 1 || presented.IPAddresses[0].String() != addrs[0] {
			t.Errorf("node %s presents a certificate for %q, IPs %v; want system:node:%s for %s", name, presented.Subject.CommonName, presented.IPAddresses, name, addrs[0])
		}
		if code, body, err := get(addr, "/metrics/resource", token); err != nil || code != 200 || !strings.Contains(body, "node_cpu_usage_seconds_total") {
			t.Errorf("node %s /metrics/resource: %d %v %s", name, code, err, tail(body, 200))
		}
		code, body, err := get(addr, "/pods", token)
		var pods corev1.PodList
		if err != nil || code != 200 || json.Unmarshal([]byte(body), &pods) != nil {
			t.Errorf("node %s /pods: %d %v %s", name, code, err, tail(body, 200))
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != name {
				t.Errorf("node %s /pods lists %s/%s of node %s", name, p.Namespace, p.Name, p.Spec.NodeName)
			}
		}
		if code, _, err := get(addr, "/metrics", ""); err != nil || code != http.StatusUnauthorized {
			t.Errorf("node %s: anonymous /metrics: %d %v, want 401", name, code, err)
		}
		// The apiserver's node proxy dials the same address and verifies
		// the node's certificate (--kubelet-certificate-authority).
		if got := s.Kubectl(t, "get", "--raw", "/api/v1/nodes/"+name+"/proxy/metrics"); !strings.Contains(got, want) {
			t.Errorf("node %s through the apiserver: no %s in %s", name, want, tail(got, 200))
		}
	}
	if len(seen) < 2 {
		t.Fatalf("only %d build nodes", len(seen))
	}
	var at []string
	for a, n := range seen {
		at = append(at, n+"="+a)
	}
	slices.Sort(at)
	t.Logf("build nodes at %v", at)
}

// scraperToken is a token of a new service account "scraper" in ns with
// read-only access to every node's kubelet API, nodes/proxy included, as
// monitoring agents (kube-prometheus's Prometheus) are given.
func (s *stack) scraperToken(t *testing.T, ns string) string {
	t.Helper()
	token, stop, err := s.NodeScraperToken(t.Context(), ns, "scraper", "e2e-node-scraper-"+ns, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return token
}

// A node is advertised only once its address leads to its kubelet API, as
// a kubelet is reachable when it says it is Ready: its Service's new
// ClusterIP leads nowhere (or, on a machine whose default route leads to a
// transparent proxy, to another TLS server) until kube-proxy has programmed
// it. With kube-proxy paused the node stays unready past its serving
// certificate's issue; once kube-proxy runs again, the first request of
// the apiserver to the Ready node reaches it, with no retry.
func TestNodeAdvertisedOnceItsAddressLeadsThere(t *testing.T) {
	s := newInClusterStack(t)
	ctx := t.Context()
	resume := s.PauseKubeProxy(t)
	name := framework.UniqueName("e2e-address")
	s.registerExtra(t, name, 2, framework.ReadFile(t, s.Host(t, 2)["KNOWN_HOSTS"]), "")

	// Its serving certificate issued: rbn-kubelet now waits for the
	// address, which kube-proxy does not program.
	framework.Eventually(t, name+"'s serving certificate issued", 60*time.Second, func() (bool, string) {
		list, err := s.Client.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("spec.signerName", certificatesv1.KubeletServingSignerName).String(),
		})
		if err != nil {
			return false, err.Error()
		}
		for i := range list.Items {
			if csr := &list.Items[i]; requestedIdentity(csr) == nodeidentity.UserPrefix+name && len(csr.Status.Certificate) > 0 {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d kubelet-serving CSRs, none issued for %s", len(list.Items), name)
	})
	// The node must not turn Ready while kube-proxy is paused: without
	// the wait it does within a second of its certificate (this test
	// failed so on the code before it).
	const window = 5 * time.Second
	wctx, cancel := context.WithTimeout(ctx, window)
	defer cancel()
	w, err := s.Client.CoreV1().Nodes().Watch(wctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String()})
	if err != nil {
		t.Fatal(err)
	}
	for ev := range w.ResultChan() {
		if n, ok := ev.Object.(*corev1.Node); ok && framework.NodeReady(n) {
			t.Fatalf("node %s Ready at %v while kube-proxy has not programmed its Service", name, internalIPs(n))
		}
	}
	w.Stop()

	resume()
	s.WaitNodeReady(t, name, corev1.ConditionTrue, nil, 90*time.Second)
	// The apiserver's first request to the node, verifying its certificate
	// for its address (--kubelet-certificate-authority).
	if out, err := s.KubectlErr("get", "--raw", "/api/v1/nodes/"+name+"/proxy/healthz"); err != nil || strings.TrimSpace(out) != "ok" {
		t.Errorf("the apiserver to Ready node %s: %q, %v", name, out, err)
	}
}
