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
// renamed to the reference the pod asked for. The registry's credentials
// never reach the host; nothing is buffered whole or written to
// rbn-kubelet's disk; the listener exists only while the pull runs and dies
// with the connection.
//
// The host's loopback is shared by every local user and every container
// with host networking, and whoever reaches the relay gets the pod's image
// as the pod's credentials allow. So the relay answers one client, the
// pull it was opened for: each pull draws its own password (crypto/rand,
// at least 128 bits) which podman sends as HTTP basic auth, and every
// request without it (the /v2/ version check included) gets 401 before
// anything else, the upstream registry never hearing of it. A credential
// rather than a secret in the path: image names show in `podman images`,
// podman's events and logs and error messages, while pull credentials
// travel in the API request's X-Registry-Auth header, which podman neither
// stores nor logs, and the password is worthless once the pull is over.
// The listener must also be on loopback only: HostListener.ListenLoopback
// (sshconn) checks the address the host's sshd actually bound, which
// GatewayPorts yes widens to every address, and refuses otherwise.
//
// The package knows nothing of Kubernetes: it takes an image reference,
// credentials, a way to listen on the host and a way to drive its podman.
package imagerelay
