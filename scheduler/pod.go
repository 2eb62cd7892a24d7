package scheduler

import (
	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// PodNeeds is what the decisions need to know about a pod.
type PodNeeds struct {
	// EphemeralBytes is the pod's declared ephemeral-storage: the sum over
	// app containers and restartable (sidecar) init containers, plus the
	// largest other init container, plus the pod overhead.
	EphemeralBytes int64
	// Images are the distinct normalized images of all its containers.
	Images []string
	// NativeArch is the rbnv1.AnnotationNativeArch value, or empty.
	NativeArch string
	// VolumeBytes is what the pod's unbound claims of rbn.dev/host-local
	// will take on the chosen host (VolumeBytes). NeedsOf leaves it 0: it
	// depends on claims, not on the pod alone.
	VolumeBytes int64
}

// NeedsOf reads a pod.
//
// Init containers count with their maximum, not their sum, although podman
// keeps an exited init container's layer until the pod is removed: what an
// init container writes for the app containers goes to shared volumes (an
// emptyDir), so summing would count it twice, and the request is a peak, not
// what stays.
func NeedsOf(pod *corev1.Pod) PodNeeds {
	var n PodNeeds
	seen := map[string]bool{}
	addImage := func(image string) {
		if image == "" {
			return
		}
		if norm, err := NormalizeImage(image); err == nil {
			image = norm
		}
		if !seen[image] {
			seen[image] = true
			n.Images = append(n.Images, image)
		}
	}
	var sum, maxInit int64
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		addImage(c.Image)
		b := ephemeralRequest(c.Resources)
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sum += b // a sidecar runs beside the app containers
		} else if b > maxInit {
			maxInit = b
		}
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		addImage(c.Image)
		sum += ephemeralRequest(c.Resources)
	}
	n.EphemeralBytes = sum + maxInit
	// Pod-level resources, when they name ephemeral-storage, are the pod's
	// request (as the scheduler's accounting takes them).
	if r := pod.Spec.Resources; r != nil {
		if b := ephemeralRequest(*r); b > 0 {
			n.EphemeralBytes = b
		}
	}
	if q, ok := pod.Spec.Overhead[corev1.ResourceEphemeralStorage]; ok {
		n.EphemeralBytes += q.Value()
	}
	n.NativeArch = pod.Annotations[rbnv1.AnnotationNativeArch]
	return n
}

// ephemeralRequest is the container's ephemeral-storage request, or its
// limit when only a limit is set (the apiserver defaults requests to limits;
// this covers pods that did not go through it).
func ephemeralRequest(r corev1.ResourceRequirements) int64 {
	if q, ok := r.Requests[corev1.ResourceEphemeralStorage]; ok {
		return q.Value()
	}
	if q, ok := r.Limits[corev1.ResourceEphemeralStorage]; ok {
		return q.Value()
	}
	return 0
}
