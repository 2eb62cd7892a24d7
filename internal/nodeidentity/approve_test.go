package nodeidentity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/nodeservice"
	"github.com/remote-build-nodes/rbn/internal/testcert"
)

const requester = "system:serviceaccount:rbn-system:rbn-kubelet"

// x509Request shortens the mutators' signatures.
type x509Request = x509.CertificateRequest

// fakeNodes: RemoteBuildNodes by name, Nodes by name with whether rbn
// serves them, and the ClusterIPs of nodes' Services.
type fakeNodes struct {
	rbns       map[string]bool
	nodes      map[string]bool
	serviceIPs map[string]string
}

func (f fakeNodes) RemoteBuildNode(name string) bool { return f.rbns[name] }
func (f fakeNodes) ServedNode(name string) (bool, bool) {
	served, ok := f.nodes[name]
	return ok, served
}
func (f fakeNodes) ServiceIP(name string) (string, bool) {
	ip, ok := f.serviceIPs[name]
	return ip, ok
}

func nodeCSR(t *testing.T, mutate func(*x509.CertificateRequest, *certificatesv1.CertificateSigningRequestSpec)) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:build-1", Organization: []string{"system:nodes"}}}
	spec := certificatesv1.CertificateSigningRequestSpec{
		SignerName: certificatesv1.KubeAPIServerClientKubeletSignerName, Username: requester,
		Usages:            []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		ExpirationSeconds: ptr.To[int32](24 * 3600),
	}
	if mutate != nil {
		mutate(tmpl, &spec)
	}
	spec.Request = testcert.RequestPEM(t, tmpl)
	return &certificatesv1.CertificateSigningRequest{Spec: spec}
}

// servingCSR is rbn-kubelet's request for build-1's serving certificate
// at 10.96.0.21, as the Issuer makes it, changed by mutate.
func servingCSR(t *testing.T, mutate func(*x509.CertificateRequest, *certificatesv1.CertificateSigningRequestSpec)) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	return nodeCSR(t, func(r *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
		r.DNSNames, r.IPAddresses = []string{"build-1"}, []net.IP{net.ParseIP("10.96.0.21")}
		s.SignerName = certificatesv1.KubeletServingSignerName
		s.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
		if mutate != nil {
			mutate(r, s)
		}
	})
}

func TestDecide(t *testing.T) {
	nodes := fakeNodes{
		rbns:  map[string]bool{"build-1": true, "worker-1": true, "build-new": true},
		nodes: map[string]bool{"build-1": true, "worker-1": false},
	}
	policy := Policy{Requester: requester, MaxLifetime: 48 * time.Hour}
	type mutation = func(*x509.CertificateRequest, *certificatesv1.CertificateSigningRequestSpec)
	for _, tc := range []struct {
		name   string
		mutate mutation
		want   Decision
		reason string
	}{
		{"a served node's identity", nil, Approve, "RBNNodeIdentity"},
		{"a RemoteBuildNode whose Node is not registered yet", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName = "system:node:build-new"
		}, Approve, "RBNNodeIdentity"},
		{"with key encipherment (RSA keys)", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Usages = append(s.Usages, certificatesv1.UsageKeyEncipherment)
		}, Approve, "RBNNodeIdentity"},
		{"another requester: a real node's bootstrap", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Username = "system:bootstrap:abcdef"
		}, Ignore, ""},
		{"another signer", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.SignerName = certificatesv1.KubeAPIServerClientSignerName
		}, Ignore, ""},
		{"a real node's identity", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName = "system:node:worker-1"
		}, Deny, ReasonNotServed},
		{"no RemoteBuildNode of that name", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName = "system:node:elsewhere"
		}, Deny, ReasonNoRemoteBuildNode},
		{"not a node's user", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName = "system:admin"
		}, Deny, ReasonInvalidRequest},
		{"an empty node name", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName = "system:node:"
		}, Deny, ReasonInvalidRequest},
		{"system:masters besides", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.Organization = []string{"system:nodes", "system:masters"}
		}, Deny, ReasonInvalidRequest},
		{"a DNS name", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.DNSNames = []string{"build-1"}
		}, Deny, ReasonInvalidRequest},
		{"an IP address", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")}
		}, Deny, ReasonInvalidRequest},
		{"server auth", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Usages = append(s.Usages, certificatesv1.UsageServerAuth)
		}, Deny, ReasonInvalidRequest},
		{"no client auth", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
		}, Deny, ReasonInvalidRequest},
		{"too long a lifetime", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.ExpirationSeconds = ptr.To[int32](365 * 24 * 3600)
		}, Deny, ReasonInvalidRequest},
		{"no lifetime asked", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.ExpirationSeconds = nil
		}, Deny, ReasonInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(policy, nodeCSR(t, tc.mutate), nodes)
			if got.Decision != tc.want || got.Reason != tc.reason {
				t.Errorf("Decide = %+v, want decision %d reason %q", got, tc.want, tc.reason)
			}
			if got.Decision != Ignore && got.Message == "" {
				t.Errorf("Decide = %+v: no message", got)
			}
		})
	}

	t.Run("not PEM", func(t *testing.T) {
		csr := nodeCSR(t, nil)
		csr.Spec.Request = []byte("garbage")
		if got := Decide(policy, csr, nodes); got.Decision != Deny || got.Reason != ReasonInvalidRequest {
			t.Errorf("Decide = %+v", got)
		}
	})
	t.Run("a signature that does not match", func(t *testing.T) {
		csr := nodeCSR(t, nil)
		block, _ := pem.Decode(csr.Spec.Request)
		block.Bytes[len(block.Bytes)-3] ^= 0xff
		csr.Spec.Request = pem.EncodeToMemory(block)
		if got := Decide(policy, csr, nodes); got.Decision != Deny || got.Reason != ReasonInvalidRequest {
			t.Errorf("Decide = %+v", got)
		}
	})
}

func TestDecideServing(t *testing.T) {
	nodes := fakeNodes{
		rbns:       map[string]bool{"build-1": true, "worker-1": true, "build-new": true, "build-2": true, "build-3": true},
		nodes:      map[string]bool{"build-1": true, "worker-1": false},
		serviceIPs: map[string]string{"build-1": "10.96.0.21", "worker-1": "10.96.0.22", "build-new": "10.96.0.23", "build-3": "fd00::3"},
	}
	policy := Policy{Requester: requester, MaxLifetime: 48 * time.Hour}
	type mutation = func(*x509.CertificateRequest, *certificatesv1.CertificateSigningRequestSpec)
	node := func(name, ip string) mutation {
		return func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName, r.DNSNames, r.IPAddresses = UserPrefix+name, []string{name}, []net.IP{net.ParseIP(ip)}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate mutation
		want   Decision
		reason string
		// message is a part of the Deny's message, which tells the rules
		// that share ReasonInvalidRequest apart.
		message string
	}{
		{"a served node's serving certificate", nil, Approve, "RBNNodeServing", "10.96.0.21"},
		{"no DNS name", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.DNSNames = nil
		}, Approve, "RBNNodeServing", ""},
		{"with key encipherment (RSA keys)", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Usages = append(s.Usages, certificatesv1.UsageKeyEncipherment)
		}, Approve, "RBNNodeServing", ""},
		{"server auth alone", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageServerAuth}
		}, Approve, "RBNNodeServing", ""},
		{"a RemoteBuildNode whose Node is not registered yet", node("build-new", "10.96.0.23"), Approve, "RBNNodeServing", ""},
		{"an IPv6 ClusterIP", node("build-3", "fd00:0:0:0::3"), Approve, "RBNNodeServing", ""},
		{"a real kubelet's serving certificate", func(r *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Username = "system:node:worker-1"
			node("worker-1", "192.168.1.1")(r, s)
		}, Ignore, "", ""},
		{"not a node's user", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName = "kubernetes"
		}, Deny, ReasonInvalidRequest, "common name"},
		{"system:masters besides", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.Organization = []string{"system:nodes", "system:masters"}
		}, Deny, ReasonInvalidRequest, "organizations"},
		{"no organization", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.Organization = nil
		}, Deny, ReasonInvalidRequest, "organizations"},
		{"an email address", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.EmailAddresses = []string{"build-1@example.com"}
		}, Deny, ReasonInvalidRequest, "no email address or URI"},
		{"a URI", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.URIs = []*url.URL{{Scheme: "spiffe", Host: "cluster.local", Path: "/ns/rbn-system/sa/rbn-kubelet"}}
		}, Deny, ReasonInvalidRequest, "no email address or URI"},
		{"another node's DNS name", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.DNSNames = []string{"build-1", "kubernetes.default.svc"}
		}, Deny, ReasonInvalidRequest, `DNS name "kubernetes.default.svc"`},
		{"no IP address", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.IPAddresses = nil
		}, Deny, ReasonInvalidRequest, "exactly one"},
		{"two IP addresses", func(r *x509.CertificateRequest, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.IPAddresses = append(r.IPAddresses, net.ParseIP("10.96.0.1"))
		}, Deny, ReasonInvalidRequest, "exactly one"},
		{"no server auth", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
		}, Deny, ReasonInvalidRequest, `lack "server auth"`},
		{"client auth besides", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.Usages = append(s.Usages, certificatesv1.UsageClientAuth)
		}, Deny, ReasonInvalidRequest, `usage "client auth" is not a serving certificate's`},
		{"too long a lifetime", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.ExpirationSeconds = ptr.To[int32](365 * 24 * 3600)
		}, Deny, ReasonInvalidRequest, "lifetime"},
		{"no lifetime asked", func(_ *x509.CertificateRequest, s *certificatesv1.CertificateSigningRequestSpec) {
			s.ExpirationSeconds = nil
		}, Deny, ReasonInvalidRequest, "lifetime"},
		{"no RemoteBuildNode of that name", node("elsewhere", "10.96.0.21"), Deny, ReasonNoRemoteBuildNode, "no RemoteBuildNode elsewhere"},
		{"a real node's Node", node("worker-1", "10.96.0.22"), Deny, ReasonNotServed, "Node worker-1"},
		{"a node whose Service has no ClusterIP yet", node("build-2", "10.96.0.24"), Deny, ReasonServiceIPUnknown, nodeservice.Name("build-2")},
		{"another address than the Service's", node("build-1", "10.96.0.1"), Deny, ReasonServiceIPMismatch, "IP address 10.96.0.1 is not node build-1's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Decide(policy, servingCSR(t, tc.mutate), nodes)
			if got.Decision != tc.want || got.Reason != tc.reason || !strings.Contains(got.Message, tc.message) {
				t.Errorf("Decide = %+v, want decision %d reason %q message with %q", got, tc.want, tc.reason, tc.message)
			}
			if got.Decision != Ignore && got.Message == "" {
				t.Errorf("Decide = %+v: no message", got)
			}
		})
	}

	t.Run("a signature that does not match", func(t *testing.T) {
		csr := servingCSR(t, nil)
		block, _ := pem.Decode(csr.Spec.Request)
		block.Bytes[len(block.Bytes)-3] ^= 0xff
		csr.Spec.Request = pem.EncodeToMemory(block)
		if got := Decide(policy, csr, nodes); got.Decision != Deny || got.Reason != ReasonInvalidRequest || !strings.Contains(got.Message, "signature") {
			t.Errorf("Decide = %+v", got)
		}
	})
	t.Run("not PEM", func(t *testing.T) {
		csr := servingCSR(t, nil)
		csr.Spec.Request = []byte("garbage")
		if got := Decide(policy, csr, nodes); got.Decision != Deny || got.Reason != ReasonInvalidRequest || !strings.Contains(got.Message, "PEM") {
			t.Errorf("Decide = %+v", got)
		}
	})
}

func TestListerNodes(t *testing.T) {
	rbns := cache.NewStore(cache.MetaNamespaceKeyFunc)
	_ = rbns.Add(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "build-1"}})
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "build-1", Labels: map[string]string{"rbn.dev/remote-build-node": "true"}}})
	_ = nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}})
	services := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for node, ip := range map[string]string{"build-1": "10.96.0.21", "build-2": "", "build-3": corev1.ClusterIPNone} {
		_ = services.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "rbn-system", Name: nodeservice.Name(node)}, Spec: corev1.ServiceSpec{ClusterIP: ip}})
	}
	// The node's Service in another namespace is not its own.
	_ = services.Add(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: nodeservice.Name("build-4")}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.24"}})
	l := ListerNodes{RemoteBuildNodes: rbns, Nodes: corev1listers.NewNodeLister(nodes), Services: corev1listers.NewServiceLister(services).Services("rbn-system")}
	if !l.RemoteBuildNode("build-1") || l.RemoteBuildNode("worker-1") {
		t.Error("RemoteBuildNode: want build-1 only")
	}
	for name, want := range map[string][2]bool{"build-1": {true, true}, "worker-1": {true, false}, "build-new": {false, false}} {
		if exists, served := l.ServedNode(name); exists != want[0] || served != want[1] {
			t.Errorf("ServedNode(%s) = %v, %v; want %v", name, exists, served, want)
		}
	}
	for name, want := range map[string]string{"build-1": "10.96.0.21", "build-2": "", "build-3": "", "build-4": "", "build-5": ""} {
		if ip, ok := l.ServiceIP(name); ip != want || ok != (want != "") {
			t.Errorf("ServiceIP(%s) = %q, %v; want %q", name, ip, ok, want)
		}
	}
	if ip, ok := (ListerNodes{}).ServiceIP("build-1"); ok {
		t.Errorf("ServiceIP without a Service lister = %q", ip)
	}
}
