// Package imagerelay brings an image to a build host that cannot reach its
// registry, through rbn-kubelet's own access to it.
//
// For one pull, rbn-kubelet resolves the image in the registry itself (with
// the pod's credentials, so failures read as the registry's own errors),
// asks the host to listen on its loopback and forward connections over the
// node's SSH connection (tcpip-forward), and serves there a read-only
// registry (distribution API v2: /v2/, the manifests and blobs of that one
// repository) whose content streams from the upstream registry through
// go.podman.io/image's docker transport. The host's podman pulls from
// 127.0.0.1:<port>, skipping layers it already has, and the image is then
// renamed to the reference the pod asked for. Credentials never reach the
// host; nothing is buffered whole or written to rbn-kubelet's disk; the
// listener exists only while the pull runs and dies with the connection.
//
// The package knows nothing of Kubernetes: it takes an image reference,
// credentials, a way to listen on the host and a way to drive its podman.
package imagerelay
