package nodeservice

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// Port is the port every node is reached at, a kubelet's: Prometheus's
// kubelet scrape assumes it.
const Port = 10250

// PortName names the Service's port and the EndpointSlice's.
const PortName = "kubelet"

// ManagedBy is the EndpointSlices' endpointslice.kubernetes.io/managed-by
// (a label value: no slash, unlike the controller's own
// endpointslice-controller.k8s.io): the EndpointSlice controller leaves
// slices of Services without a selector alone anyway; the label says who
// writes them.
const ManagedBy = "rbn-kubelet.rbn.dev"

// Target is where a node's kubelet API is served now: the serving
// replica's pod IP and the node's own port there.
type Target struct {
	IP   netip.Addr
	Port int32
}

// Owner is the RemoteBuildNode the Service and EndpointSlice belong to:
// they are garbage collected with it.
type Owner struct {
	Name string
	UID  types.UID
}

// Service is node's Service: no selector (its EndpointSlice is rbn's),
// one TCP port, Port.
func Service(namespace string, owner Owner) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: meta(namespace, owner),
		Spec: corev1.ServiceSpec{
			Type:  corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: PortName, Protocol: corev1.ProtocolTCP, Port: Port, TargetPort: intstr.FromInt32(Port)}},
			// The apiserver, metrics-server and Prometheus dial the
			// ClusterIP: no session affinity or topology to mind.
			SessionAffinity: corev1.ServiceAffinityNone,
		},
	}
}

// EndpointSlice is the slice that leads node's Service to target.
func EndpointSlice(namespace string, owner Owner, target Target) *discoveryv1.EndpointSlice {
	m := meta(namespace, owner)
	m.Labels[discoveryv1.LabelServiceName] = m.Name
	m.Labels[discoveryv1.LabelManagedBy] = ManagedBy
	family := discoveryv1.AddressTypeIPv4
	if target.IP.Is6() {
		family = discoveryv1.AddressTypeIPv6
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  m,
		AddressType: family,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{target.IP.String()},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
		}},
		Ports: []discoveryv1.EndpointPort{{Name: ptr.To(PortName), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To(target.Port)}},
	}
}

func meta(namespace string, owner Owner) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:      Name(owner.Name),
		Namespace: namespace,
		Labels:    map[string]string{rbnv1.LabelNode: owner.Name},
		OwnerReferences: []metav1.OwnerReference{{
			APIVersion: rbnv1.SchemeGroupVersion.String(), Kind: "RemoteBuildNode", Name: owner.Name, UID: owner.UID,
		}},
	}
}

// ErrNoClusterIP: the Service has no ClusterIP (someone made it headless).
var ErrNoClusterIP = errors.New("node Service has no ClusterIP")

// Ensure makes node's Service and points its EndpointSlice at target, and
// returns the Service's ClusterIP, the node's address. An existing Service
// is kept as it is (its ClusterIP is the address the node advertised and
// its serving certificate names); an existing slice is rewritten when it
// leads elsewhere, as after a takeover.
func Ensure(ctx context.Context, client kubernetes.Interface, namespace string, owner Owner, target Target) (netip.Addr, error) {
	want := Service(namespace, owner)
	svcs := client.CoreV1().Services(namespace)
	svc, err := svcs.Get(ctx, want.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		svc, err = svcs.Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			svc, err = svcs.Get(ctx, want.Name, metav1.GetOptions{})
		}
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node Service %s/%s: %w", namespace, want.Name, err)
	}
	ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %s/%s has %q", ErrNoClusterIP, namespace, svc.Name, svc.Spec.ClusterIP)
	}
	wantSlice := EndpointSlice(namespace, owner, target)
	slices := client.DiscoveryV1().EndpointSlices(namespace)
	slice, err := slices.Get(ctx, wantSlice.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(ctx, wantSlice, metav1.CreateOptions{})
	case err == nil && !sameTarget(slice, wantSlice):
		slice = slice.DeepCopy()
		slice.Labels, slice.OwnerReferences = wantSlice.Labels, wantSlice.OwnerReferences
		slice.AddressType, slice.Endpoints, slice.Ports = wantSlice.AddressType, wantSlice.Endpoints, wantSlice.Ports
		_, err = slices.Update(ctx, slice, metav1.UpdateOptions{})
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("node EndpointSlice %s/%s: %w", namespace, wantSlice.Name, err)
	}
	return ip, nil
}

func sameTarget(have, want *discoveryv1.EndpointSlice) bool {
	return have.AddressType == want.AddressType &&
		equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) &&
		equality.Semantic.DeepEqual(have.Ports, want.Ports) &&
		have.Labels[discoveryv1.LabelServiceName] == want.Labels[discoveryv1.LabelServiceName]
}

// CurrentPort returns the node port its EndpointSlice leads to when it
// leads to ip (this replica): the port to keep when this replica serves
// the node again, so that the slice need not change.
func CurrentPort(ctx context.Context, client kubernetes.Interface, namespace, node string, ip netip.Addr) (int32, bool) {
	slice, err := client.DiscoveryV1().EndpointSlices(namespace).Get(ctx, Name(node), metav1.GetOptions{})
	if err != nil || len(slice.Ports) != 1 || slice.Ports[0].Port == nil {
		return 0, false
	}
	for _, ep := range slice.Endpoints {
		for _, a := range ep.Addresses {
			if addr, err := netip.ParseAddr(a); err == nil && addr == ip {
				return *slice.Ports[0].Port, true
			}
		}
	}
	return 0, false
}

// Delete removes node's Service and EndpointSlice (their owner's garbage
// collection would too, later).
func Delete(ctx context.Context, client kubernetes.Interface, namespace, node string) error {
	name := Name(node)
	if err := client.DiscoveryV1().EndpointSlices(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("node EndpointSlice %s/%s: %w", namespace, name, err)
	}
	if err := client.CoreV1().Services(namespace).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("node Service %s/%s: %w", namespace, name, err)
	}
	return nil
}
