package nodeidentity

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/testcert"
)

const requester = "system:serviceaccount:rbn-system:rbn-kubelet"

// x509Request shortens the mutators' signatures.
type x509Request = x509.CertificateRequest

// fakeNodes: RemoteBuildNodes by name, and Nodes by name with whether rbn
// serves them.
type fakeNodes struct {
	rbns  map[string]bool
	nodes map[string]bool
}

func (f fakeNodes) RemoteBuildNode(name string) bool { return f.rbns[name] }
func (f fakeNodes) ServedNode(name string) (bool, bool) {
	served, ok := f.nodes[name]
	return ok, served
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

func TestListerNodes(t *testing.T) {
	rbns := cache.NewStore(cache.MetaNamespaceKeyFunc)
	_ = rbns.Add(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "build-1"}})
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	_ = nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "build-1", Labels: map[string]string{"rbn.dev/remote-build-node": "true"}}})
	_ = nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "worker-1"}})
	l := ListerNodes{RemoteBuildNodes: rbns, Nodes: corev1listers.NewNodeLister(nodes)}
	if !l.RemoteBuildNode("build-1") || l.RemoteBuildNode("worker-1") {
		t.Error("RemoteBuildNode: want build-1 only")
	}
	for name, want := range map[string][2]bool{"build-1": {true, true}, "worker-1": {true, false}, "build-new": {false, false}} {
		if exists, served := l.ServedNode(name); exists != want[0] || served != want[1] {
			t.Errorf("ServedNode(%s) = %v, %v; want %v", name, exists, served, want)
		}
	}
}
