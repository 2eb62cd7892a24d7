// Package nodeidentity gives each node rbn-kubelet serves an identity of
// its own in the cluster, as a kubelet has: a client certificate for user
// system:node:<name> in group system:nodes, signed by the cluster's
// kubernetes.io/kube-apiserver-client-kubelet signer. With it, the Node
// authorizer and the NodeRestriction admission plugin fence what
// rbn-kubelet does for that node exactly as they fence a kubelet: the
// Secrets and ConfigMaps its pods use, their status and deletion, tokens
// bound to them, its own Node and Lease.
//
// Each node also gets a serving certificate for its kubelet API, as a
// kubelet with serverTLSBootstrap gets one: signed by the
// kubernetes.io/kubelet-serving signer, for the same subject and for the
// node's own address, the ClusterIP of its Service (internal/nodeservice),
// so that the apiserver, metrics-server and Prometheus can verify whom
// they reach.
//
// rbn-kubelet requests the certificates; the approver here approves them,
// run apart from rbn-kubelet under an account of its own, so that a
// compromised rbn-kubelet cannot give itself the identity of a node it
// does not serve: a CSR is approved only when its requester is
// rbn-kubelet's service account and it names a node that is a
// RemoteBuildNode, whose Node (if it exists yet) rbn serves, and a serving
// certificate only for that node's Service's ClusterIP. The
// kube-controller-manager's own approver ignores these requests
// (rbn-kubelet lacks certificatesigningrequests/nodeclient, and nobody
// approves kubelet-serving requests by default), and its signers sign the
// approved ones.
package nodeidentity

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"github.com/remote-build-nodes/rbn/internal/nodeservice"
)

// The identity a kubelet's certificates carry.
const (
	// UserPrefix prefixes a node's user name: system:node:<name>.
	UserPrefix = "system:node:"
	// Group is every node's group.
	Group = "system:nodes"
)

// Decision is what the approver makes of a request.
type Decision int

const (
	// Ignore: not a request of rbn-kubelet's for a node identity; left to
	// whoever approves it (the kube-controller-manager for real nodes).
	Ignore Decision = iota
	// Approve: the identity of a node rbn serves, as it may be issued.
	Approve
	// Deny: rbn-kubelet's, but not one to issue; Reason and Message say
	// why, on the request's Denied condition.
	Deny
)

// Verdict is a Decision with its reason.
type Verdict struct {
	Decision
	Reason, Message string
}

// Nodes answers what the approver needs to know of a node name.
type Nodes interface {
	// RemoteBuildNode tells whether a RemoteBuildNode of that name exists.
	RemoteBuildNode(name string) bool
	// ServedNode tells whether a Node of that name exists, and if so
	// whether it carries rbn's label (rbn.dev/remote-build-node=true).
	ServedNode(name string) (exists, served bool)
	// ServiceIP is the ClusterIP of the node's Service (rbn's namespace,
	// nodeservice.Name(name)); ok is false while there is no such Service
	// or it has no ClusterIP.
	ServiceIP(name string) (ip string, ok bool)
}

// Policy is what a request must meet besides naming a node rbn serves.
type Policy struct {
	// Requester is rbn-kubelet's user name
	// (system:serviceaccount:<namespace>:<name>).
	Requester string
	// MaxLifetime bounds the lifetime a request may ask for; a request that
	// asks none gets the signer's default, which the signer bounds itself.
	MaxLifetime time.Duration
}

// Reasons of a Deny.
const (
	ReasonInvalidRequest = "RBNInvalidNodeIdentityRequest"
	// ReasonNoRemoteBuildNode: the name is no RemoteBuildNode's (the
	// Approver waits a while for one first).
	ReasonNoRemoteBuildNode = "RBNNoRemoteBuildNode"
	// ReasonNotServed: the Node is a real node's, not rbn's.
	ReasonNotServed = "RBNNodeNotServed"
	// ReasonServiceIPUnknown: a serving certificate's node has no Service
	// with a ClusterIP (the Approver waits a while for one first).
	ReasonServiceIPUnknown = "RBNNodeServiceIPUnknown"
	// ReasonServiceIPMismatch: a serving certificate asks an IP address
	// other than its node's Service's ClusterIP (the Approver waits a
	// while for the Service to change first).
	ReasonServiceIPMismatch = "RBNNodeServiceIPMismatch"
)

// Decide judges a CertificateSigningRequest: rbn-kubelet's requests for a
// node's client certificate (signer kube-apiserver-client-kubelet) and
// for its serving certificate (signer kubelet-serving). It is pure: the
// node facts come from nodes.
func Decide(p Policy, csr *certificatesv1.CertificateSigningRequest, nodes Nodes) Verdict {
	if csr.Spec.Username != p.Requester {
		// A real kubelet's, or another component's: someone else's to judge.
		return Verdict{Decision: Ignore}
	}
	switch csr.Spec.SignerName {
	case certificatesv1.KubeAPIServerClientKubeletSignerName:
		return decideClient(p, csr, nodes)
	case certificatesv1.KubeletServingSignerName:
		return decideServing(p, csr, nodes)
	}
	return Verdict{Decision: Ignore}
}

func deny(reason, format string, args ...any) Verdict {
	return Verdict{Decision: Deny, Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// decideClient judges a client certificate request: the node's user and
// group, nothing else.
func decideClient(p Policy, csr *certificatesv1.CertificateSigningRequest, nodes Nodes) Verdict {
	req, node, v := nodeRequest(csr)
	if req == nil {
		return v
	}
	if len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
		return deny(ReasonInvalidRequest, "a client certificate names no DNS name, IP address, email address or URI")
	}
	if v, ok := checkUsages(csr.Spec.Usages, certificatesv1.UsageClientAuth, "client"); !ok {
		return v
	}
	if v, ok := checkLifetime(p, csr); !ok {
		return v
	}
	if v, ok := checkNode(node, nodes); !ok {
		return v
	}
	return Verdict{Decision: Approve, Reason: "RBNNodeIdentity", Message: "the identity of node " + node + ", a RemoteBuildNode rbn-kubelet serves"}
}

// decideServing judges a serving certificate request: the node's user and
// group, at most the node's name as DNS name, and exactly the address the
// cluster reaches the node at, its Service's ClusterIP.
func decideServing(p Policy, csr *certificatesv1.CertificateSigningRequest, nodes Nodes) Verdict {
	req, node, v := nodeRequest(csr)
	if req == nil {
		return v
	}
	if len(req.EmailAddresses)+len(req.URIs) > 0 {
		return deny(ReasonInvalidRequest, "a serving certificate names no email address or URI")
	}
	for _, name := range req.DNSNames {
		if name != node {
			return deny(ReasonInvalidRequest, "DNS name %q: a serving certificate names no DNS name but its node's, %s", name, node)
		}
	}
	if len(req.IPAddresses) != 1 {
		return deny(ReasonInvalidRequest, "IP addresses %q: a serving certificate names exactly one, its node's Service's ClusterIP", req.IPAddresses)
	}
	if v, ok := checkUsages(csr.Spec.Usages, certificatesv1.UsageServerAuth, "serving"); !ok {
		return v
	}
	if v, ok := checkLifetime(p, csr); !ok {
		return v
	}
	if v, ok := checkNode(node, nodes); !ok {
		return v
	}
	service := nodeservice.Name(node)
	ip, ok := nodes.ServiceIP(node)
	want := net.ParseIP(ip)
	if !ok || want == nil {
		return deny(ReasonServiceIPUnknown, "node %s's Service %s has no ClusterIP yet: its serving certificate names that address only", node, service)
	}
	if asked := req.IPAddresses[0]; !asked.Equal(want) {
		return deny(ReasonServiceIPMismatch, "IP address %s is not node %s's: its Service %s has ClusterIP %s", asked, node, service, want)
	}
	return Verdict{Decision: Approve, Reason: "RBNNodeServing", Message: "the serving certificate of node " + node + " at " + want.String() + ", a RemoteBuildNode rbn-kubelet serves"}
}

// nodeRequest parses the request and checks its subject is a node's; it
// returns the request and the node's name, or a nil request and the
// verdict.
func nodeRequest(csr *certificatesv1.CertificateSigningRequest) (*x509.CertificateRequest, string, Verdict) {
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, "", deny(ReasonInvalidRequest, "the request holds no PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, "", deny(ReasonInvalidRequest, "the certificate request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, "", deny(ReasonInvalidRequest, "the certificate request's signature: %v", err)
	}
	node, ok := strings.CutPrefix(req.Subject.CommonName, UserPrefix)
	if !ok || node == "" {
		return nil, "", deny(ReasonInvalidRequest, "common name %q is not %s<node>", req.Subject.CommonName, UserPrefix)
	}
	if !slices.Equal(req.Subject.Organization, []string{Group}) {
		return nil, "", deny(ReasonInvalidRequest, "organizations %q, want exactly [%s]", req.Subject.Organization, Group)
	}
	return req, node, Verdict{}
}

// checkUsages: the usages include the one that makes the certificate what
// it is (client or server auth), and are otherwise only those a key needs
// in a TLS handshake.
func checkUsages(usages []certificatesv1.KeyUsage, auth certificatesv1.KeyUsage, kind string) (Verdict, bool) {
	if !slices.Contains(usages, auth) {
		return deny(ReasonInvalidRequest, "usages %q lack %q", usages, auth), false
	}
	for _, u := range usages {
		switch u {
		case auth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return deny(ReasonInvalidRequest, "usage %q is not a %s certificate's", u, kind), false
		}
	}
	return Verdict{}, true
}

func checkLifetime(p Policy, csr *certificatesv1.CertificateSigningRequest) (Verdict, bool) {
	if s := csr.Spec.ExpirationSeconds; p.MaxLifetime > 0 && (s == nil || time.Duration(*s)*time.Second > p.MaxLifetime) {
		return deny(ReasonInvalidRequest, "a lifetime of at most %s must be asked (expirationSeconds)", p.MaxLifetime), false
	}
	return Verdict{}, true
}

// checkNode: the node is one rbn serves.
func checkNode(node string, nodes Nodes) (Verdict, bool) {
	if !nodes.RemoteBuildNode(node) {
		return deny(ReasonNoRemoteBuildNode, "no RemoteBuildNode %s: rbn-kubelet may have the identity of the nodes rbn serves only", node), false
	}
	if exists, served := nodes.ServedNode(node); exists && !served {
		return deny(ReasonNotServed, "Node %s is not one rbn serves (no label rbn.dev/remote-build-node=true): its identity is its own kubelet's", node), false
	}
	return Verdict{}, true
}
