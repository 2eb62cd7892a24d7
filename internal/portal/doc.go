// Package portal is rbn-portal: on a real node, it routes the TCP
// connections that kube-proxy sends to pods on remote build nodes into a
// network namespace of its own (where every address of the pod range is
// local and it listens on each port in use), and relays each accepted
// connection, by its destination, to the pod an EndpointSlice names
// there, through the apiserver's port-forward subresource.
package portal
