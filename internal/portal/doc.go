// Package portal is rbn-portal: on a real node, it makes the kernel deliver
// the traffic that kube-proxy sends to pods on remote build nodes locally
// (a policy rule and a local route for the rbn pod range), listens on each
// (pod IP, port) the EndpointSlices name, and relays every connection to
// its pod through the apiserver's port-forward subresource.
package portal
