package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationHostFacts is the Node annotation where rbn-kubelet publishes
// HostFacts as JSON, for rbn-extender: live figures a Node's capacity and
// allocatable cannot express.
const AnnotationHostFacts = GroupName + "/host-facts"

// LabelDraining on a Node (value "true") asks rbn-extender to keep new pods
// away from it while its running jobs finish.
const LabelDraining = GroupName + "/draining"

// HostFacts are what rbn-kubelet last measured on a build host.
type HostFacts struct {
	// ObservedAt is when the figures were read; the extender ignores stale facts.
	ObservedAt metav1.Time `json:"observedAt"`
	// Healthy is false while the host fails its health checks (SSH or podman).
	Healthy bool `json:"healthy"`
	// StorageFreeBytes is the free space of podman's image and container store.
	StorageFreeBytes int64 `json:"storageFreeBytes"`
	// TmpFreeBytes is the free space of the host's temporary area (image
	// copies, build scratch); -1 when unknown.
	TmpFreeBytes int64 `json:"tmpFreeBytes"`
	// RunningPods counts pods rbn-kubelet runs on the host now.
	RunningPods int `json:"runningPods"`
	// RecentFailures counts pods that failed on the host for host reasons
	// (image pull, container create/start) in the last 10 minutes.
	RecentFailures int `json:"recentFailures"`
	// SSHRoundTripMillis is the last keepalive round trip.
	SSHRoundTripMillis int64 `json:"sshRoundTripMillis"`
	// Images are the references (repo:tag and repo@digest) present on the host.
	Images []string `json:"images,omitempty"`
}
