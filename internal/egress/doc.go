// Package egress decides which addresses rbn-kubelet may connect to on a
// pod's behalf. The S3 endpoint of a transfer and the registry of an image
// pulled through the kubelet are the pod's user's choice, and rbn-kubelet
// runs inside the cluster: without a policy a pod could make it fetch cloud
// metadata (169.254.169.254), its own ports on loopback, or cluster-internal
// services, and read the answer back from its volume or image.
//
// The policy is enforced when a connection is made (a net.Dialer Control
// hook sees the address actually connected to), so neither a name that
// resolves differently later (DNS rebinding) nor a redirect escapes it.
package egress
