package portal

import (
	"cmp"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// Pod names a pod on a remote build node: where a connection is relayed.
type Pod struct {
	Namespace, Name string
	// Node is the pod's node, as its endpoint names it (nodeName): whose
	// kubelet API KubeletPortForwarder dials. Empty when the endpoint
	// names none.
	Node string
}

func (p Pod) String() string { return p.Namespace + "/" + p.Name }

// Target is what a connection is relayed to: a port of a pod.
type Target struct {
	Pod
	UID types.UID
	// Port is the pod's port number. kube-proxy DNATs to the pod's own
	// port, so it equals the connection's destination port, but the relay
	// asks for it here.
	Port int32
}

// Skipped is an endpoint port the portal does not relay (UDP, SCTP).
type Skipped struct {
	Addr     netip.AddrPort
	Protocol corev1.Protocol
	Target   Target
}

// Desired is what the portal relays: one target per (pod IP, port),
// however many Services name it.
type Desired struct {
	Endpoints map[netip.AddrPort]Target
	// Skipped lists the non-TCP ports, sorted, once each.
	Skipped []Skipped
}

// DesiredState computes the endpoints relayed for eps: the IPv4 TCP ports of
// the endpoints that are pods with an address in podCIDR. Readiness does
// not matter: kube-proxy decides where traffic goes, the portal only
// has to accept it while an address is in any slice.
func DesiredState(eps []*discoveryv1.EndpointSlice, podCIDR netip.Prefix) Desired {
	d := Desired{Endpoints: map[netip.AddrPort]Target{}}
	skipped := map[Skipped]bool{}
	for _, s := range eps {
		if s.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		for _, ep := range s.Endpoints {
			ref := ep.TargetRef
			if ref == nil || ref.Kind != "Pod" || ref.Name == "" {
				continue
			}
			ns := cmp.Or(ref.Namespace, s.Namespace)
			for _, a := range ep.Addresses {
				ip, err := netip.ParseAddr(a)
				if err != nil || !ip.Is4() || !podCIDR.Contains(ip) {
					continue
				}
				for _, p := range s.Ports {
					if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
						continue // no port: "all ports", nothing to relay to
					}
					addr := netip.AddrPortFrom(ip, uint16(*p.Port))
					t := Target{Pod: Pod{Namespace: ns, Name: ref.Name, Node: ptr.Deref(ep.NodeName, "")}, UID: ref.UID, Port: *p.Port}
					proto := corev1.ProtocolTCP
					if p.Protocol != nil {
						proto = *p.Protocol
					}
					if proto != corev1.ProtocolTCP {
						skipped[Skipped{Addr: addr, Protocol: proto, Target: t}] = true
						continue
					}
					if _, ok := d.Endpoints[addr]; !ok {
						d.Endpoints[addr] = t
					}
				}
			}
		}
	}
	for s := range skipped {
		d.Skipped = append(d.Skipped, s)
	}
	slices.SortFunc(d.Skipped, func(a, b Skipped) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Protocol, b.Protocol))
	})
	return d
}
