//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	coordinationclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	discoveryclient "k8s.io/client-go/kubernetes/typed/discovery/v1"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/e2e/framework"
	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/nodeservice"
)

// The admission policies of manifests/rbac/admission.yaml fence what
// rbn-kubelet's identity may write, as the Node authorizer and
// NodeRestriction fence a kubelet. Each request below is made twice with
// the real apiserver: as the cluster's admin, which must be allowed (so the
// refusal is the fence's, not a bad request), and as rbn-kubelet
// (impersonated), which must be refused by the named policy, or allowed
// where rbn-kubelet serves the object. Writes are dry runs (admission runs,
// nothing is stored). Its nodes' pods' statuses and tokens are no longer
// its account's to write: TestNodeIdentities.

// kubeletIdentity is the user rbn-kubelet authenticates as on this stack:
// its service account in the cluster, a client certificate's user locally
// (hack/dev-up.sh applies the policies to that user).
func (s *stack) kubeletIdentity() rest.ImpersonationConfig {
	if s.InCluster {
		return rest.ImpersonationConfig{
			UserName: "system:serviceaccount:" + framework.RBNNamespace + ":rbn-kubelet",
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + framework.RBNNamespace, "system:authenticated"},
		}
	}
	return rest.ImpersonationConfig{UserName: "rbn-kubelet", Groups: []string{"system:authenticated"}}
}

func TestKubeletWritesFenced(t *testing.T) {
	s := newStack(t)
	ctx := context.Background()
	who := s.kubeletIdentity()
	kubelet := s.clientAs(t, who)
	admin := s.Client
	dry := []string{metav1.DryRunAll}
	fault := framework.RecordFault(t, "rbn-kubelet's credential used to write what it does not serve")
	attempts, refusals := 0, 0
	defer func() {
		fault.Figure(fmt.Sprintf("%d writes beyond what it serves attempted, %d refused by the policies", attempts, refusals))
	}()

	// refused checks that admin may do what op does and rbn-kubelet may not,
	// for the reason policy gives.
	refused := func(t *testing.T, policy string, op func(kubernetes.Interface) error) {
		t.Helper()
		if err := op(admin); err != nil {
			t.Fatalf("as admin: %v (want allowed: the request itself must be valid)", err)
		}
		attempts++
		err := op(kubelet)
		if err == nil {
			t.Fatalf("as %s: allowed, want refused by the admission policy %s", who.UserName, policy)
		}
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "'"+policy+"'") {
			t.Fatalf("as %s: %v, want refused by the admission policy %s", who.UserName, err, policy)
		}
		refusals++
		t.Logf("refused: %v", err)
	}
	allowed := func(t *testing.T, op func(kubernetes.Interface) error) {
		t.Helper()
		if err := op(kubelet); err != nil {
			t.Fatalf("as %s: %v, want allowed", who.UserName, err)
		}
	}

	// A Node rbn does not serve, and its Lease, as a kubelet registers them
	// (no kubelet runs for it: the objects are enough for the apiserver).
	foreign := "fence-foreign-" + rand.String(5)
	node, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: foreign, Labels: map[string]string{corev1.LabelHostname: foreign}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), foreign, metav1.DeleteOptions{}) })
	leases := func(c kubernetes.Interface) coordinationclient.LeaseInterface {
		return c.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	}
	lease, err := admin.CoordinationV1().Leases(corev1.NamespaceNodeLease).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: foreign, OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: foreign, UID: node.UID}}},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &foreign, LeaseDurationSeconds: new(int32(40))},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	served, ok := s.Node(t, s.buildNodes(t)[0])
	if !ok {
		t.Fatal("the first build node vanished")
	}

	t.Run("nodes", func(t *testing.T) {
		patch := func(name, p string) func(kubernetes.Interface) error {
			return func(c kubernetes.Interface) error {
				_, err := c.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, []byte(p), metav1.PatchOptions{DryRun: dry})
				return err
			}
		}
		// Taking a foreign Node over: its taints and labels, its status, the Node itself.
		refused(t, "rbn-kubelet-nodes", patch(foreign, `{"spec":{"taints":[{"key":"rbn.dev/remote-build-node","value":"true","effect":"NoSchedule"}]}}`))
		refused(t, "rbn-kubelet-nodes", patch(foreign, fmt.Sprintf(`{"metadata":{"labels":{%q:"true"}}}`, rbnv1.LabelRemoteBuildNode)))
		refused(t, "rbn-kubelet-nodes", func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().Patch(ctx, foreign, types.StrategicMergePatchType, []byte(`{"status":{"conditions":[{"type":"Ready","status":"False","reason":"Fenced","message":"test"}]}}`), metav1.PatchOptions{DryRun: dry}, "status")
			return err
		})
		refused(t, "rbn-kubelet-nodes", func(c kubernetes.Interface) error {
			return c.CoreV1().Nodes().Delete(ctx, foreign, metav1.DeleteOptions{DryRun: dry})
		})
		// A new Node must be rbn's from its first write.
		unlabelled := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "fence-new-" + rand.String(5)}}
		refused(t, "rbn-kubelet-nodes", func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().Create(ctx, unlabelled, metav1.CreateOptions{DryRun: dry})
			return err
		})
		// Its own Node: it may not give it away either.
		refused(t, "rbn-kubelet-nodes", patch(served.Name, fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, rbnv1.LabelRemoteBuildNode)))

		allowed(t, func(c kubernetes.Interface) error {
			labelled := unlabelled.DeepCopy()
			labelled.Labels = map[string]string{rbnv1.LabelRemoteBuildNode: "true"}
			_, err := c.CoreV1().Nodes().Create(ctx, labelled, metav1.CreateOptions{DryRun: dry})
			return err
		})
		allowed(t, patch(served.Name, `{"metadata":{"annotations":{"rbn.dev/fence-test":"allowed"}}}`))
		allowed(t, func(c kubernetes.Interface) error {
			_, err := c.CoreV1().Nodes().Patch(ctx, served.Name, types.StrategicMergePatchType, []byte(`{"status":{"nodeInfo":{"kubeletVersion":"`+served.Status.NodeInfo.KubeletVersion+`"}}}`), metav1.PatchOptions{DryRun: dry}, "status")
			return err
		})
	})

	t.Run("node leases", func(t *testing.T) {
		refused(t, "rbn-kubelet-node-leases", func(c kubernetes.Interface) error {
			renewed := lease.DeepCopy()
			renewed.Labels = map[string]string{rbnv1.LabelRemoteBuildNode: "true"}
			_, err := leases(c).Update(ctx, renewed, metav1.UpdateOptions{DryRun: dry})
			return err
		})
		refused(t, "rbn-kubelet-node-leases", func(c kubernetes.Interface) error {
			return leases(c).Delete(ctx, foreign, metav1.DeleteOptions{DryRun: dry})
		})
		// The Lease rbn-kubelet renews for the node it serves carries the
		// label, and renewing it stays allowed.
		own, err := admin.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, served.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if own.Labels[rbnv1.LabelRemoteBuildNode] != "true" {
			t.Fatalf("Lease %s of rbn's node: labels %v, want %s=true", own.Name, own.Labels, rbnv1.LabelRemoteBuildNode)
		}
		allowed(t, func(c kubernetes.Interface) error {
			_, err := leases(c).Patch(ctx, own.Name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"rbn.dev/fence-test":"allowed"}}}`), metav1.PatchOptions{DryRun: dry})
			return err
		})
	})

	t.Run("node services", func(t *testing.T) {
		if !s.InCluster {
			t.Skip("nodeServices is on where rbn runs in the cluster (manifests/): in this local stack rbn-kubelet writes no Services")
		}
		svcs := func(c kubernetes.Interface) corev1client.ServiceInterface {
			return c.CoreV1().Services(framework.RBNNamespace)
		}
		slices := func(c kubernetes.Interface) discoveryclient.EndpointSliceInterface {
			return c.DiscoveryV1().EndpointSlices(framework.RBNNamespace)
		}
		plain := func(name string) *corev1.Service {
			return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
				Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 10250}}}}
		}
		// rbn-extender's Service and its slice are not its to touch.
		refused(t, "rbn-kubelet-node-services", func(c kubernetes.Interface) error {
			return svcs(c).Delete(ctx, "rbn-extender", metav1.DeleteOptions{DryRun: dry})
		})
		extenderSlices, err := slices(admin).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=rbn-extender"})
		if err != nil || len(extenderSlices.Items) == 0 {
			t.Fatalf("rbn-extender's EndpointSlices: %v, %v", extenderSlices, err)
		}
		refused(t, "rbn-kubelet-node-services", func(c kubernetes.Interface) error {
			hijacked := extenderSlices.Items[0].DeepCopy()
			hijacked.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.42.0.200"}}}
			_, err := slices(c).Update(ctx, hijacked, metav1.UpdateOptions{DryRun: dry})
			return err
		})
		// A node Service that selects pods, or claims an external IP.
		refused(t, "rbn-kubelet-node-services", func(c kubernetes.Interface) error {
			svc := plain("rbn-node-fence-" + rand.String(5))
			svc.Spec.Selector = map[string]string{"app": "anything"}
			_, err := svcs(c).Create(ctx, svc, metav1.CreateOptions{DryRun: dry})
			return err
		})
		refused(t, "rbn-kubelet-node-services", func(c kubernetes.Interface) error {
			svc := plain("rbn-node-fence-" + rand.String(5))
			svc.Spec.ExternalIPs = []string{"192.0.2.10"}
			_, err := svcs(c).Create(ctx, svc, metav1.CreateOptions{DryRun: dry})
			return err
		})
		// Its own: a node's Service and the slice that leads it to a replica.
		allowed(t, func(c kubernetes.Interface) error {
			_, err := svcs(c).Create(ctx, plain("rbn-node-fence-"+rand.String(5)), metav1.CreateOptions{DryRun: dry})
			return err
		})
		own, err := slices(admin).Get(ctx, nodeservice.Name(served.Name), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		allowed(t, func(c kubernetes.Interface) error {
			_, err := slices(c).Update(ctx, own, metav1.UpdateOptions{DryRun: dry})
			return err
		})
	})
}
