package pod

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
)

// WarningSpecChangeIgnored is the reason of the Warning event for a change
// to a running pod's spec that rbn does not apply.
const WarningSpecChangeIgnored = "SpecChangeIgnored"

// UnappliedChanges lists the changes from planned (the spec a pod's plan
// was made from) to current that the API allows on a running pod and rbn
// does not apply, by field path: a container's image (the kubelet restarts
// the container with it) and its resources (an in-place resize). The other
// mutable fields need nothing here: ephemeral containers are run as they
// come (kubectl debug), tolerations and scheduling gates are the scheduler's,
// terminationGracePeriodSeconds is read when the pod is deleted and
// activeDeadlineSeconds at every sync.
func UnappliedChanges(planned, current *corev1.PodSpec) []string {
	var out []string
	containers := func(kind string, was, is []corev1.Container) {
		byName := make(map[string]*corev1.Container, len(was))
		for i := range was {
			byName[was[i].Name] = &was[i]
		}
		for i := range is {
			old, ok := byName[is[i].Name]
			if !ok {
				continue // the API allows no new containers
			}
			f := fmt.Sprintf("spec.%s[%d]", kind, i)
			if old.Image != is[i].Image {
				out = append(out, f+".image")
			}
			if !equality.Semantic.DeepEqual(old.Resources, is[i].Resources) {
				out = append(out, f+".resources")
			}
		}
	}
	containers("initContainers", planned.InitContainers, current.InitContainers)
	containers("containers", planned.Containers, current.Containers)
	return out
}
