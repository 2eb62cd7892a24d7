// Package nodeidentity gives each node rbn-kubelet serves an identity of
// its own in the cluster, as a kubelet has: a client certificate for user
// system:node:<name> in group system:nodes, signed by the cluster's
// kubernetes.io/kube-apiserver-client-kubelet signer. With it, the Node
// authorizer and the NodeRestriction admission plugin fence what
// rbn-kubelet does for that node exactly as they fence a kubelet: the
// Secrets and ConfigMaps its pods use, their status and deletion, tokens
// bound to them, its own Node and Lease.
//
// rbn-kubelet requests the certificates; the approver here approves them,
// run apart from rbn-kubelet under an account of its own, so that a
// compromised rbn-kubelet cannot give itself the identity of a node it
// does not serve: a CSR is approved only when its requester is
// rbn-kubelet's service account and it names a node that is a
// RemoteBuildNode, whose Node (if it exists yet) rbn serves. The
// kube-controller-manager's own approver ignores these requests
// (rbn-kubelet lacks certificatesigningrequests/nodeclient), and its
// signer signs the approved ones.
package nodeidentity

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
)

// The identity a kubelet's client certificate carries.
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
)

// Decide judges a CertificateSigningRequest. It is pure: the node facts
// come from nodes.
func Decide(p Policy, csr *certificatesv1.CertificateSigningRequest, nodes Nodes) Verdict {
	if csr.Spec.SignerName != certificatesv1.KubeAPIServerClientKubeletSignerName || csr.Spec.Username != p.Requester {
		return Verdict{Decision: Ignore}
	}
	deny := func(reason, format string, args ...any) Verdict {
		return Verdict{Decision: Deny, Reason: reason, Message: fmt.Sprintf(format, args...)}
	}
	block, _ := pem.Decode(csr.Spec.Request)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return deny(ReasonInvalidRequest, "the request holds no PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return deny(ReasonInvalidRequest, "the certificate request does not parse: %v", err)
	}
	if err := req.CheckSignature(); err != nil {
		return deny(ReasonInvalidRequest, "the certificate request's signature: %v", err)
	}
	node, ok := strings.CutPrefix(req.Subject.CommonName, UserPrefix)
	if !ok || node == "" {
		return deny(ReasonInvalidRequest, "common name %q is not %s<node>", req.Subject.CommonName, UserPrefix)
	}
	if !slices.Equal(req.Subject.Organization, []string{Group}) {
		return deny(ReasonInvalidRequest, "organizations %q, want exactly [%s]", req.Subject.Organization, Group)
	}
	if len(req.DNSNames)+len(req.IPAddresses)+len(req.EmailAddresses)+len(req.URIs) > 0 {
		return deny(ReasonInvalidRequest, "a client certificate names no DNS name, IP address, email address or URI")
	}
	if !slices.Contains(csr.Spec.Usages, certificatesv1.UsageClientAuth) {
		return deny(ReasonInvalidRequest, "usages %q lack %q", csr.Spec.Usages, certificatesv1.UsageClientAuth)
	}
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageClientAuth, certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment:
		default:
			return deny(ReasonInvalidRequest, "usage %q is not a client certificate's", u)
		}
	}
	if s := csr.Spec.ExpirationSeconds; p.MaxLifetime > 0 && (s == nil || time.Duration(*s)*time.Second > p.MaxLifetime) {
		return deny(ReasonInvalidRequest, "a lifetime of at most %s must be asked (expirationSeconds)", p.MaxLifetime)
	}
	if !nodes.RemoteBuildNode(node) {
		return deny(ReasonNoRemoteBuildNode, "no RemoteBuildNode %s: rbn-kubelet may have the identity of the nodes rbn serves only", node)
	}
	if exists, served := nodes.ServedNode(node); exists && !served {
		return deny(ReasonNotServed, "Node %s is not one rbn serves (no label rbn.dev/remote-build-node=true): its identity is its own kubelet's", node)
	}
	return Verdict{Decision: Approve, Reason: "RBNNodeIdentity", Message: "the identity of node " + node + ", a RemoteBuildNode rbn-kubelet serves"}
}
