package portal

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

func slice(ns string, addrType discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: "s"},
		AddressType: addrType, Ports: ports, Endpoints: eps,
	}
}

func tcp(port int32) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Port: ptr.To(port), Protocol: ptr.To(corev1.ProtocolTCP)}
}

func podEndpoint(name string, ready bool, addrs ...string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{
		Addresses:  addrs,
		Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: name, UID: types.UID("uid-" + name)},
		NodeName:   ptr.To("node-" + name),
	}
}

func target(ns, name string, port int32) Target {
	return Target{Pod: Pod{Namespace: ns, Name: name, Node: "node-" + name}, UID: types.UID("uid-" + name), Port: port}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestDesiredState(t *testing.T) {
	cidr := netip.MustParsePrefix("100.96.0.0/16")
	for _, tc := range []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   Desired
	}{{
		name: "nothing",
		want: Desired{Endpoints: map[netip.AddrPort]Target{}},
	}, {
		name: "a pod's TCP ports, ready or not",
		slices: []*discoveryv1.EndpointSlice{slice("ns", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{tcp(22), {Port: ptr.To[int32](80)}}, // no protocol: TCP
			podEndpoint("a", true, "100.96.1.2"), podEndpoint("b", false, "100.96.2.3"))},
		want: Desired{Endpoints: map[netip.AddrPort]Target{
			ap("100.96.1.2:22"): target("ns", "a", 22), ap("100.96.1.2:80"): target("ns", "a", 80),
			ap("100.96.2.3:22"): target("ns", "b", 22), ap("100.96.2.3:80"): target("ns", "b", 80),
		}},
	}, {
		name: "outside the range, not a pod, no port, IPv6 slices: nothing",
		slices: []*discoveryv1.EndpointSlice{
			slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)},
				podEndpoint("real", true, "10.244.0.5"),
				discoveryv1.Endpoint{Addresses: []string{"100.96.1.9"}},
				discoveryv1.Endpoint{Addresses: []string{"100.96.1.8"}, TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "n"}}),
			slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{{Protocol: ptr.To(corev1.ProtocolTCP)}},
				podEndpoint("a", true, "100.96.1.2")),
			slice("ns", discoveryv1.AddressTypeIPv6, []discoveryv1.EndpointPort{tcp(22)},
				podEndpoint("a", true, "fd00::2")),
		},
		want: Desired{Endpoints: map[netip.AddrPort]Target{}},
	}, {
		name: "several Services naming one port: one endpoint; the targetRef's namespace wins",
		slices: []*discoveryv1.EndpointSlice{
			slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)}, podEndpoint("a", true, "100.96.1.2")),
			slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22), tcp(8080)}, podEndpoint("a", false, "100.96.1.2")),
			slice("other", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(9000)}, func() discoveryv1.Endpoint {
				ep := podEndpoint("c", true, "100.96.3.4")
				ep.TargetRef.Namespace = "pods"
				return ep
			}()),
		},
		want: Desired{Endpoints: map[netip.AddrPort]Target{
			ap("100.96.1.2:22"): target("ns", "a", 22), ap("100.96.1.2:8080"): target("ns", "a", 8080),
			ap("100.96.3.4:9000"): target("pods", "c", 9000),
		}},
	}, {
		name: "UDP and SCTP are skipped, once each",
		slices: []*discoveryv1.EndpointSlice{
			slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{
				tcp(53), {Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)},
				{Port: ptr.To[int32](9), Protocol: ptr.To(corev1.ProtocolSCTP)},
			}, podEndpoint("dns", true, "100.96.1.2")),
			slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{{Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)}},
				podEndpoint("dns", true, "100.96.1.2")),
		},
		want: Desired{
			Endpoints: map[netip.AddrPort]Target{ap("100.96.1.2:53"): target("ns", "dns", 53)},
			Skipped: []Skipped{
				{Addr: ap("100.96.1.2:9"), Protocol: corev1.ProtocolSCTP, Target: target("ns", "dns", 9)},
				{Addr: ap("100.96.1.2:53"), Protocol: corev1.ProtocolUDP, Target: target("ns", "dns", 53)},
			},
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got := DesiredState(tc.slices, cidr)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("DesiredState:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}
