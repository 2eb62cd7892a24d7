package scheduler

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// Claims looks up what VolumeBytes needs beyond the pod: its claims and
// their classes' provisioners (package state's informer cache). A false
// means not in the cache (yet).
type Claims interface {
	Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool)
	Provisioner(storageClass string) (string, bool)
}

// ClaimNames are the distinct claims a pod's volumes use, in volume order:
// persistentVolumeClaim volumes name theirs, and a generic ephemeral volume
// uses the claim "<pod>-<volume>" its controller creates for the pod. (That
// such a claim belongs to the pod is kube-scheduler's VolumeBinding
// pre-filter's to check: it keeps a pod with a stranger's claim from
// reaching the extenders.)
func ClaimNames(pod *corev1.Pod) []string {
	var names []string
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		var name string
		switch {
		case v.PersistentVolumeClaim != nil:
			name = v.PersistentVolumeClaim.ClaimName
		case v.Ephemeral != nil:
			name = pod.Name + "-" + v.Name
		default:
			continue
		}
		if name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names
}

// VolumeBytes is the space the pod's volumes still need on the host the
// scheduler picks: the storage requested by each of its distinct claims
// that is not bound yet (no spec.volumeName) and whose StorageClass's
// provisioner is rbn.dev/host-local. rbn-kubelet makes each of them on the
// chosen node's host, one after the other: a host with room for one but
// not all would refuse the rest, and the pod would go round the slow
// refuse-and-reschedule loop.
//
// What it cannot know counts nothing, so the filter never refuses a host
// the provisioner would accept: a claim or class not in the cache yet (the
// provisioner still refuses a host without room, and says why in the
// claim's events), a claim without a class (default-class admission has
// run before the pod was scheduled: one still without a class binds
// statically), a claim of any other provisioner. A claim that is bound
// already lives where its PersistentVolume is, whose node affinity the
// scheduler follows. The request is counted as asked: a host may round a
// small volume up (a LoopFile volume takes 16 MiB at least), which only
// the host's provisioner knows.
func VolumeBytes(pod *corev1.Pod, claims Claims) int64 {
	var sum int64
	for _, name := range ClaimNames(pod) {
		c, ok := claims.Claim(pod.Namespace, name)
		if !ok || c.Spec.VolumeName != "" || c.Spec.StorageClassName == nil || *c.Spec.StorageClassName == "" {
			continue
		}
		if p, ok := claims.Provisioner(*c.Spec.StorageClassName); !ok || p != rbnv1.ProvisionerHostLocal {
			continue
		}
		if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; ok && q.Sign() > 0 {
			sum += q.Value()
		}
	}
	return sum
}
