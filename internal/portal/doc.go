// Package portal is rbn-portal: on a real node, it makes the kernel steer
// the TCP connections that kube-proxy sends to pods on remote build nodes
// to one transparent listener (nftables TPROXY after kube-proxy's DNAT,
// and a policy route), and relays each accepted connection, by its
// original destination, to the pod an EndpointSlice names there, through
// the apiserver's port-forward subresource.
package portal
