package v1alpha1

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// AnnotationClusterServices is the pod annotation that names the cluster
// Services a pod on a remote build node reaches through rbn: a build host
// has no route to the cluster, so rbn-kubelet relays the pod's connections
// to them (docs/services.md, "The other direction"). Its value is a
// comma-separated list of Services, each `name` (in the pod's namespace) or
// `name.namespace`, as a pod's DNS search path resolves them.
const AnnotationClusterServices = GroupName + "/cluster-services"

// MaxClusterServices bounds the Services one pod may name: each gets a
// loopback address of its own in the pod (127.0.100.1 to 127.0.100.254).
const MaxClusterServices = 254

// ParseClusterServices parses the annotation's value for a pod of
// namespace: the Services in the order named, without duplicates.
func ParseClusterServices(value, namespace string) ([]types.NamespacedName, field.ErrorList) {
	path := field.NewPath("metadata", "annotations").Key(AnnotationClusterServices)
	var out []types.NamespacedName
	var errs field.ErrorList
	seen := map[types.NamespacedName]bool{}
	for i, entry := range strings.Split(value, ",") {
		entry = strings.TrimSpace(entry)
		p := path.Index(i)
		if entry == "" {
			errs = append(errs, field.Invalid(p, entry, "an empty entry: name Services as `name` or `name.namespace`, separated by commas"))
			continue
		}
		name, ns, qualified := strings.Cut(entry, ".")
		if !qualified {
			ns = namespace
		}
		bad := false
		for _, msg := range validation.IsDNS1035Label(name) {
			errs = append(errs, field.Invalid(p, entry, fmt.Sprintf("Service name %q: %s", name, msg)))
			bad = true
		}
		for _, msg := range validation.IsDNS1123Label(ns) {
			errs = append(errs, field.Invalid(p, entry, fmt.Sprintf("namespace %q: %s (name Services as `name` or `name.namespace`)", ns, msg)))
			bad = true
		}
		if bad {
			continue
		}
		ref := types.NamespacedName{Namespace: ns, Name: name}
		if !seen[ref] {
			seen[ref] = true
			out = append(out, ref)
		}
	}
	if len(out) > MaxClusterServices {
		errs = append(errs, field.TooMany(path, len(out), MaxClusterServices))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}
