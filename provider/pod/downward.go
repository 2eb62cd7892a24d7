package pod

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// fieldRef resolves a downward API field path the way the kubelet's
// fieldpath.ExtractFieldPathAsString does. The files are written once, before
// the containers start: fields only known later (the pod IP) are refused
// rather than written empty.
func (t *translator) fieldRef(field, fieldPath string) (string, error) {
	p := t.pod
	if base, key, ok := splitSubscript(fieldPath); ok {
		switch base {
		case "metadata.labels":
			return p.Labels[key], nil
		case "metadata.annotations":
			return p.Annotations[key], nil
		}
		return "", unsupported(field, ReasonUnsupportedField, "downward API field %q is not supported", fieldPath)
	}
	switch fieldPath {
	case "metadata.name":
		return p.Name, nil
	case "metadata.namespace":
		return p.Namespace, nil
	case "metadata.uid":
		return string(p.UID), nil
	case "metadata.labels":
		return formatMap(p.Labels), nil
	case "metadata.annotations":
		return formatMap(p.Annotations), nil
	case "spec.nodeName":
		if p.Spec.NodeName != "" {
			return p.Spec.NodeName, nil
		}
		return t.in.NodeName, nil
	case "spec.serviceAccountName":
		return p.Spec.ServiceAccountName, nil
	case "status.podIP", "status.podIPs", "status.hostIP", "status.hostIPs":
		return "", unsupported(field, ReasonUnsupportedField, "downward API field %q is not known when volume files are written, before the pod starts", fieldPath)
	}
	return "", unsupported(field, ReasonUnsupportedField, "downward API field %q is not supported", fieldPath)
}

// envFieldRef resolves a fieldRef in env: the fields API validation allows
// there, which include the pod's and host's IPs (known once the podman pod
// exists, unlike for volume files, which the API does not let name them).
func (t *translator) envFieldRef(field string, ref *corev1.ObjectFieldSelector) (string, error) {
	if ref.APIVersion != "" && ref.APIVersion != "v1" {
		return "", unsupported(field+".apiVersion", ReasonUnsupportedField, "fieldRef apiVersion %q is not supported (only v1)", ref.APIVersion)
	}
	p := ref.FieldPath
	if base, _, ok := splitSubscript(p); ok && (base == "metadata.labels" || base == "metadata.annotations") {
		return t.fieldRef(field+".fieldPath", p)
	}
	switch p {
	case "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName":
		return t.fieldRef(field+".fieldPath", p)
	case "status.podIP", "status.podIPs":
		// The lists (comma-joined by the kubelet) hold one address: a
		// podman pod has one on its network, a build host one that rbn uses.
		t.usesPodIP = true
		return t.in.PodIP, nil
	case "status.hostIP", "status.hostIPs":
		return t.in.HostIP, nil
	}
	return "", unsupported(field+".fieldPath", ReasonUnsupportedField, "downward API field %q is not supported in env", p)
}

// splitSubscript splits "metadata.labels['key']" into its map and key, as the
// kubelet's fieldpath.SplitMaybeSubscriptedPath.
func splitSubscript(fieldPath string) (string, string, bool) {
	if !strings.HasSuffix(fieldPath, "']") {
		return fieldPath, "", false
	}
	parts := strings.SplitN(strings.TrimSuffix(fieldPath, "']"), "['", 2)
	if len(parts) < 2 || parts[0] == "" {
		return fieldPath, "", false
	}
	return parts[0], parts[1], true
}

// formatMap is the kubelet's format for labels and annotations in a downward
// API file: key="value" lines (Go quoting), sorted by key, no final newline.
func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	lines := make([]string, len(keys))
	for i, k := range keys {
		lines[i] = fmt.Sprintf("%s=%q", k, m[k])
	}
	return strings.Join(lines, "\n")
}

// resourceFieldRef renders a container's resource in divisor units, rounded
// up, as the kubelet's ExtractContainerResourceValue. The container is the
// one named, or self when none is (env refers to its own container; a
// volume, with self nil, must name one). A limit the container does not set
// is the pod-level limit (spec.resources) if the pod sets one, else the
// node's allocatable amount, as for the kubelet
// (defaultPodLimitsForDownwardAPI, which takes the pod's only for a resource
// the node reports); if Input.NodeAllocatable lacks it,
// the value is unknown and the pod refused rather than given a guess.
func (t *translator) resourceFieldRef(field string, ref *corev1.ResourceFieldSelector, self *corev1.Container) (string, error) {
	c := self
	switch {
	case ref.ContainerName != "":
		if c = findContainer(t.pod, ref.ContainerName); c == nil {
			return "", unsupported(field+".containerName", ReasonInvalidSpec, "no container %q in the pod", ref.ContainerName)
		}
	case c == nil:
		return "", unsupported(field+".containerName", ReasonInvalidSpec, "resourceFieldRef in a volume must name a container")
	}
	kind, res, ok := strings.Cut(ref.Resource, ".")
	if !ok || (kind != "limits" && kind != "requests") {
		return "", unsupported(field+".resource", ReasonUnsupportedField, "resource %q is not supported", ref.Resource)
	}
	name := corev1.ResourceName(res)
	if name != corev1.ResourceCPU && name != corev1.ResourceMemory && name != corev1.ResourceEphemeralStorage {
		return "", unsupported(field+".resource", ReasonUnsupportedField, "resource %q is not supported", ref.Resource)
	}
	limit, hasLimit := c.Resources.Limits[name]
	hasLimit = hasLimit && !limit.IsZero() // a zero limit is no limit, as for the kubelet
	var q resource.Quantity
	switch {
	case kind == "requests":
		// A missing request defaults to the container's own limit (API
		// defaulting, redone for pods that skipped it), then to 0; never to
		// the node's allocatable.
		if req, ok := c.Resources.Requests[name]; ok {
			q = req
		} else if hasLimit {
			q = limit
		}
	case hasLimit:
		q = limit
	default:
		alloc, ok := t.in.NodeAllocatable[name]
		if !ok {
			return "", unsupported(field+".resource", ReasonUnsupportedField,
				"container %q sets no %s limit, which means the node's allocatable %s, and the node reports none; set the limit", c.Name, res, res)
		}
		q = alloc
		// The pod-level limit, when the pod sets one, stands in for the
		// node's allocatable (cpu and memory, the pod-level resources).
		if r := t.pod.Spec.Resources; r != nil && name != corev1.ResourceEphemeralStorage {
			if pl, ok := r.Limits[name]; ok && !pl.IsZero() {
				q = pl
			}
		}
	}
	divisor := ref.Divisor
	if divisor.IsZero() {
		divisor = resource.MustParse("1")
	}
	var value, unit int64
	if name == corev1.ResourceCPU {
		value, unit = q.MilliValue(), divisor.MilliValue()
	} else {
		value, unit = q.Value(), divisor.Value()
	}
	if unit <= 0 {
		return "", unsupported(field+".divisor", ReasonInvalidSpec, "divisor %s is too small", divisor.String())
	}
	return strconv.FormatInt(ceilDiv(value, unit), 10), nil
}

// ceilDiv is a/b rounded up, for b > 0; 0 for a <= 0.
func ceilDiv(a, b int64) int64 {
	if a <= 0 {
		return 0
	}
	q := a / b
	if a%b != 0 {
		q++
	}
	return q
}

func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	return nil
}
