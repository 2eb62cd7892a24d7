// Package v1alpha1 holds the rbn.dev/v1alpha1 API: the RemoteBuildNode custom
// resource that an operator applies to turn a podman host reachable over SSH
// into a virtual Kubernetes node.
//
// +kubebuilder:object:generate=true
// +groupName=rbn.dev
package v1alpha1
