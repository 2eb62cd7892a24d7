package nodeservice

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// allocating is a fake cluster that gives each created Service a
// ClusterIP, as the apiserver does.
func allocating(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	c.PrependReactor("create", "services", func(a k8stesting.Action) (bool, runtime.Object, error) {
		svc := a.(k8stesting.CreateAction).GetObject().(*corev1.Service)
		if svc.Spec.ClusterIP == "" {
			svc.Spec.ClusterIP = "10.96.0.42"
		}
		return false, nil, nil
	})
	return c
}

func mustSlice(t *testing.T, c *fake.Clientset) *discoveryv1.EndpointSlice {
	t.Helper()
	s, err := c.DiscoveryV1().EndpointSlices("rbn-system").Get(context.Background(), "rbn-node-build-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var owner = Owner{Name: "build-1", UID: "uid-1"}

func writes(c *fake.Clientset) (n int) {
	for _, a := range c.Actions() {
		if v := a.GetVerb(); v == "create" || v == "update" || v == "delete" {
			n++
		}
	}
	return n
}

func TestEnsureMakesTheServiceAndFollowsTheServingReplica(t *testing.T) {
	ctx := context.Background()
	c := allocating()
	a := Target{IP: netip.MustParseAddr("10.244.0.5"), Port: 10251}
	ip, err := Ensure(ctx, c, "rbn-system", owner, a)
	if err != nil || ip != netip.MustParseAddr("10.96.0.42") {
		t.Fatalf("Ensure = %v, %v; want 10.96.0.42", ip, err)
	}
	svc, err := c.CoreV1().Services("rbn-system").Get(ctx, "rbn-node-build-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range []metav1.Object{svc, mustSlice(t, c)} {
		if errs := validation.ValidateLabels(obj.GetLabels(), field.NewPath("labels")); len(errs) > 0 {
			t.Errorf("%s: %v", obj.GetName(), errs)
		}
	}
	if svc.Spec.Selector != nil || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 10250 || svc.OwnerReferences[0].UID != "uid-1" {
		t.Errorf("Service = %+v", svc)
	}
	if p, ok := CurrentPort(ctx, c, "rbn-system", "build-1", a.IP); !ok || p != 10251 {
		t.Errorf("CurrentPort = %d, %v; want 10251", p, ok)
	}

	// Again, unchanged: nothing written.
	before := writes(c)
	if _, err := Ensure(ctx, c, "rbn-system", owner, a); err != nil {
		t.Fatal(err)
	}
	if w := writes(c) - before; w != 0 {
		t.Errorf("%d writes for an unchanged node", w)
	}

	// Another replica takes the node over: the slice moves, the address stays.
	b := Target{IP: netip.MustParseAddr("10.244.1.7"), Port: 10260}
	if ip2, err := Ensure(ctx, c, "rbn-system", owner, b); err != nil || ip2 != ip {
		t.Fatalf("Ensure after takeover = %v, %v; want %v", ip2, err, ip)
	}
	slice, err := c.DiscoveryV1().EndpointSlices("rbn-system").Get(ctx, "rbn-node-build-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := slice.Endpoints[0].Addresses[0]; got != "10.244.1.7" || *slice.Ports[0].Port != 10260 || slice.Labels["kubernetes.io/service-name"] != "rbn-node-build-1" {
		t.Errorf("slice after takeover: %s:%d, labels %v", got, *slice.Ports[0].Port, slice.Labels)
	}
	if _, ok := CurrentPort(ctx, c, "rbn-system", "build-1", a.IP); ok {
		t.Error("the old replica still finds its port in the slice")
	}

	if err := Delete(ctx, c, "rbn-system", "build-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Services("rbn-system").Get(ctx, "rbn-node-build-1", metav1.GetOptions{}); err == nil {
		t.Error("Service left after Delete")
	}
	if err := Delete(ctx, c, "rbn-system", "build-1"); err != nil {
		t.Errorf("Delete of a deleted node: %v", err)
	}
}

func TestEnsureRefusesAHeadlessService(t *testing.T) {
	headless := Service("rbn-system", owner)
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	c := allocating(headless)
	_, err := Ensure(context.Background(), c, "rbn-system", owner, Target{IP: netip.MustParseAddr("10.244.0.5"), Port: 10251})
	if !errors.Is(err, ErrNoClusterIP) {
		t.Fatalf("Ensure = %v, want ErrNoClusterIP", err)
	}
}

func TestEndpointSliceOfAnIPv6Replica(t *testing.T) {
	s := EndpointSlice("rbn-system", owner, Target{IP: netip.MustParseAddr("fd00::5"), Port: 10251})
	if s.AddressType != "IPv6" || s.Endpoints[0].Addresses[0] != "fd00::5" || !*s.Endpoints[0].Conditions.Ready {
		t.Errorf("slice = %+v", s)
	}
}
