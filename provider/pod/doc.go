// Package pod is where a Kubernetes pod becomes podman objects: Translate
// turns a pod (with its Secrets and ConfigMaps) into a Plan of a podman pod,
// its volumes and its containers, resolving each container's environment as
// the kubelet does (ReferencedObjects says which objects to pass in);
// ContainerSpec renders one planned container as a podman SpecGenerator and
// PodSpec the podman pod. All are pure functions, tested with golden files
// (testdata/*.yaml in, rendered output beside them). Anything the
// translation cannot honour fails with an *UnsupportedError naming the
// field, never silently; what a pod can run without (probes, limits the
// kubelet enforces by eviction) is listed in Plan.Warnings for the runtime's
// Warning events. fields.go holds the decision for every field of the spec.
package pod
