// Package podman talks to one host's podman API service through the podman v5
// bindings, over whatever stream the caller can open to the service's socket
// (an SSH channel in production). It knows nothing of Kubernetes: it speaks
// in containers, pods and images, and maps API failures to the sentinel
// errors in errors.go.
package podman
