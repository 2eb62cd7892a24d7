package nodeidentity

import (
	"net"
	"sync"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// lockedNodes is fakeNodes that a test changes while the approver runs.
type lockedNodes struct {
	mu sync.Mutex
	fakeNodes
}

func (l *lockedNodes) RemoteBuildNode(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeNodes.RemoteBuildNode(name)
}

func (l *lockedNodes) ServedNode(name string) (bool, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeNodes.ServedNode(name)
}

func (l *lockedNodes) ServiceIP(name string) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fakeNodes.ServiceIP(name)
}

// The approver approves a served node's identity, denies a real node's,
// leaves other requesters' requests alone, and waits for a RemoteBuildNode
// it does not know yet within its patience.
func TestApproverDecidesRequests(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC))
	mk := func(name, node, user string) *certificatesv1.CertificateSigningRequest {
		csr := nodeCSR(t, nil)
		if node != "build-1" {
			csr = nodeCSR(t, func(r *x509Request, _ *certificatesv1.CertificateSigningRequestSpec) {
				r.Subject.CommonName = UserPrefix + node
			})
		}
		csr.Name, csr.Spec.Username, csr.CreationTimestamp = name, user, metav1.NewTime(clk.Now())
		return csr
	}
	client := fake.NewClientset(
		mk("served", "build-1", requester),
		mk("real-node", "worker-1", requester),
		mk("bootstrap", "worker-2", "system:bootstrap:abcdef"),
		mk("not-yet", "build-new", requester),
	)
	nodes := &lockedNodes{fakeNodes: fakeNodes{rbns: map[string]bool{"build-1": true, "worker-1": true}, nodes: map[string]bool{"build-1": true, "worker-1": false}}}
	a := NewApprover(ApproverConfig{Client: client, Policy: Policy{Requester: requester, MaxLifetime: 48 * time.Hour}, Nodes: nodes,
		Clock: clk, Recheck: 10 * time.Millisecond})
	go func() { _ = a.Run(t.Context()) }()

	condition, decided := conditions(t, client)
	decided("served", certificatesv1.CertificateApproved)
	decided("real-node", certificatesv1.CertificateDenied)
	if _, reason := condition("real-node"); reason != ReasonNotServed {
		t.Errorf("real-node denied with reason %q, want %s", reason, ReasonNotServed)
	}
	if got, _ := condition("bootstrap"); got != "" {
		t.Errorf("another requester's request got %s", got)
	}
	if got, _ := condition("not-yet"); got != "" {
		t.Errorf("a request for a RemoteBuildNode not seen yet got %s within the approver's patience", got)
	}
	nodes.mu.Lock()
	nodes.rbns["build-new"] = true
	nodes.mu.Unlock()
	decided("not-yet", certificatesv1.CertificateApproved)
}

// Past the approver's patience, a request for no RemoteBuildNode is denied.
func TestApproverDeniesAfterItsPatience(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC))
	csr := nodeCSR(t, func(r *x509Request, _ *certificatesv1.CertificateSigningRequestSpec) {
		r.Subject.CommonName = UserPrefix + "elsewhere"
	})
	csr.Name, csr.CreationTimestamp = "elsewhere", metav1.NewTime(clk.Now().Add(-2*time.Minute))
	client := fake.NewClientset(csr)
	a := NewApprover(ApproverConfig{Client: client, Policy: Policy{Requester: requester}, Nodes: fakeNodes{}, Clock: clk})
	go func() { _ = a.Run(t.Context()) }()
	testwait.Eventually(t, "the request denied", func() bool {
		got, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), "elsewhere", metav1.GetOptions{})
		return err == nil && len(got.Status.Conditions) == 1 && got.Status.Conditions[0].Type == certificatesv1.CertificateDenied
	})
}

// conditions reads the Approved or Denied condition of a request, and waits
// for one.
func conditions(t *testing.T, client *fake.Clientset) (
	condition func(name string) (certificatesv1.RequestConditionType, string),
	decided func(name string, want certificatesv1.RequestConditionType),
) {
	condition = func(name string) (certificatesv1.RequestConditionType, string) {
		csr, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range csr.Status.Conditions {
			if c.Status == corev1.ConditionTrue {
				return c.Type, c.Reason
			}
		}
		return "", ""
	}
	decided = func(name string, want certificatesv1.RequestConditionType) {
		t.Helper()
		testwait.Eventually(t, name+" "+string(want), func() bool { got, _ := condition(name); return got == want })
	}
	return condition, decided
}

// The approver approves a served node's serving certificate for its
// Service's ClusterIP alongside its client certificate, leaves a real
// kubelet's serving request alone, and waits within its patience for a
// Service's ClusterIP it does not know yet.
func TestApproverApprovesServingCertificates(t *testing.T) {
	clk := testingclock.NewFakePassiveClock(time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC))
	mk := func(name string, csr *certificatesv1.CertificateSigningRequest) *certificatesv1.CertificateSigningRequest {
		csr.Name, csr.CreationTimestamp = name, metav1.NewTime(clk.Now())
		return csr
	}
	client := fake.NewClientset(
		mk("serving", servingCSR(t, nil)),
		mk("client", nodeCSR(t, nil)),
		mk("kubelet", servingCSR(t, func(r *x509Request, s *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName, r.DNSNames, s.Username = UserPrefix+"worker-1", []string{"worker-1"}, "system:node:worker-1"
		})),
		mk("no-ip-yet", servingCSR(t, func(r *x509Request, _ *certificatesv1.CertificateSigningRequestSpec) {
			r.Subject.CommonName, r.DNSNames, r.IPAddresses = UserPrefix+"build-2", []string{"build-2"}, []net.IP{net.ParseIP("10.96.0.22")}
		})),
	)
	nodes := &lockedNodes{fakeNodes: fakeNodes{
		rbns: map[string]bool{"build-1": true, "build-2": true}, nodes: map[string]bool{"build-1": true, "worker-1": false},
		serviceIPs: map[string]string{"build-1": "10.96.0.21"},
	}}
	a := NewApprover(ApproverConfig{Client: client, Policy: Policy{Requester: requester, MaxLifetime: 48 * time.Hour}, Nodes: nodes,
		Clock: clk, Recheck: 10 * time.Millisecond})
	go func() { _ = a.Run(t.Context()) }()

	condition, decided := conditions(t, client)
	decided("serving", certificatesv1.CertificateApproved)
	if _, reason := condition("serving"); reason != "RBNNodeServing" {
		t.Errorf("serving approved with reason %q, want RBNNodeServing", reason)
	}
	decided("client", certificatesv1.CertificateApproved)
	if got, _ := condition("kubelet"); got != "" {
		t.Errorf("a real kubelet's serving request got %s", got)
	}
	if got, _ := condition("no-ip-yet"); got != "" {
		t.Errorf("a request for a Service without a ClusterIP yet got %s within the approver's patience", got)
	}
	nodes.mu.Lock()
	nodes.serviceIPs["build-2"] = "10.96.0.22"
	nodes.mu.Unlock()
	decided("no-ip-yet", certificatesv1.CertificateApproved)
	if got, _ := condition("kubelet"); got != "" {
		t.Errorf("a real kubelet's serving request got %s", got)
	}
	// Each request is decided once, though the fake clientset, which
	// ignores field selectors, gives both signers' informers every request.
	for _, name := range []string{"serving", "client", "no-ip-yet"} {
		csr, err := client.CertificatesV1().CertificateSigningRequests().Get(t.Context(), name, metav1.GetOptions{})
		if err != nil || len(csr.Status.Conditions) != 1 {
			t.Errorf("%s: conditions %+v (%v), want one", name, csr.Status.Conditions, err)
		}
	}
}
