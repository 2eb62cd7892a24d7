package nodeidentity

import (
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

	condition := func(name string) (certificatesv1.RequestConditionType, string) {
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
	decided := func(name string, want certificatesv1.RequestConditionType) {
		t.Helper()
		testwait.Eventually(t, name+" "+string(want), func() bool { got, _ := condition(name); return got == want })
	}
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
