package v1alpha1

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// AnnotationHostFacts is the Node annotation where rbn-kubelet publishes
// HostFacts as JSON, for rbn-extender: live figures a Node's capacity and
// allocatable cannot express.
const AnnotationHostFacts = GroupName + "/host-facts"

// AnnotationManagedTaints on a Node names the taints (key:effect, a JSON
// list) that rbn-kubelet put there from the RemoteBuildNode's spec: those
// it removes when the spec drops them. Other taints are left alone.
const AnnotationManagedTaints = GroupName + "/managed-taints"

// AnnotationHostFactsOverride is an operator's (or a test's) correction of
// the facts rbn-kubelet publishes in AnnotationHostFacts: a JSON object
// with HostFacts' field names, applied as a JSON merge patch (RFC 7386) over
// the published facts. A field it sets replaces the published value and never
// goes stale; a field set to null makes the value unknown; fields it does not
// name keep the published value. observedAt cannot be overridden. Unknown
// fields or wrong types make the whole override unusable, and the host is
// then filtered out with the parse error as the reason, so that a typo in an
// operator's statement is loud rather than silently ignored.
//
// rbn-kubelet owns rbn.dev/host-facts and rewrites it periodically; this
// separate annotation is what survives those rewrites.
const AnnotationHostFactsOverride = AnnotationHostFacts + "-override"

// AnnotationNativeArch on a pod names the architecture (a kubernetes.io/arch
// value such as arm64) its work runs natively on, for example the target of
// an image build: hosts of that architecture are preferred, after image
// presence and load, since emulated builds are an order of magnitude slower.
// A pod that must not run elsewhere uses a nodeSelector instead.
const AnnotationNativeArch = GroupName + "/native-arch"

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
	// VolumeFreeBytes is the space a new volume of the rbn.dev/host-local
	// provisioner may have on the host: the free space of the node's volume
	// root less what the host's volumes were promised and have not written
	// yet (internal/hostvolume's Space.Free); -1 when unknown (not read
	// yet, or the host could not be asked).
	VolumeFreeBytes int64 `json:"volumeFreeBytes"`
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
