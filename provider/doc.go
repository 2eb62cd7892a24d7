// Package provider serves one RemoteBuildNode: it keeps the host's SSH and
// podman connections healthy (host.go), tells virtual-kubelet what the Node
// looks like (nodeprovider.go) and runs pods on the host (pods.go).
package provider
