package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Well-known names under rbn.dev/.
const (
	// LabelRemoteBuildNode marks every Node that rbn-kubelet serves.
	LabelRemoteBuildNode = GroupName + "/remote-build-node"
	// LabelNode is the name of the Node it is on, on a remote build node:
	// what node affinity can select one Node by (a PersistentVolume's may
	// not use matchFields), since several nodes can share a host's
	// kubernetes.io/hostname.
	LabelNode = GroupName + "/node"
	// TaintRemoteBuildNode is the key of the default taint that keeps pods
	// which did not ask for a remote build node away from it.
	TaintRemoteBuildNode = GroupName + "/remote-build-node"
	// Finalizer lets rbn-kubelet remove a node and its pods before the
	// RemoteBuildNode disappears.
	Finalizer = GroupName + "/node-cleanup"

	// ProvisionerHostLocal is rbn's volume provisioner (internal/provisioner),
	// a StorageClass's provisioner; the PersistentVolumes it makes say where
	// the volume is on its host: its directory (AnnotationVolumeDir) and the
	// file holding its file system (AnnotationVolumeImage, absent for a plain
	// directory volume).
	ProvisionerHostLocal  = GroupName + "/host-local"
	AnnotationVolumeDir   = GroupName + "/volume-dir"
	AnnotationVolumeImage = GroupName + "/volume-image"

	// SecretKeyPrivateKey holds the PEM private key rbn-kubelet authenticates with
	// (the key of the kubernetes.io/ssh-auth Secret type).
	SecretKeyPrivateKey = corev1.SSHAuthPrivateKey
	// SecretKeyKnownHosts holds the host's public key(s) in OpenSSH known_hosts format.
	SecretKeyKnownHosts = "known_hosts"
)

// Defaults for optional fields. They are applied in one place, Default().
const (
	DefaultPort         int32 = 22
	DefaultUser               = "root"
	DefaultPodmanSocket       = "/run/podman/podman.sock"
	DefaultMaxPods      int32 = 110
)

// DefaultTaint is the taint a node gets when its RemoteBuildNode sets none.
var DefaultTaint = corev1.Taint{Key: TaintRemoteBuildNode, Value: "true", Effect: corev1.TaintEffectNoSchedule}

// RemoteBuildNode is a Linux host with podman, reached over SSH, that
// rbn-kubelet serves as a Kubernetes node of the same name.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=rbn;rbns,categories=rbn
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Address",type=string,JSONPath=`.spec.address`
// +kubebuilder:printcolumn:name="Arch",type=string,JSONPath=`.status.host.architecture`
// +kubebuilder:printcolumn:name="Podman",type=string,JSONPath=`.status.host.podmanVersion`
// +kubebuilder:printcolumn:name="Last Error",type=string,JSONPath=`.status.lastError.message`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type RemoteBuildNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   RemoteBuildNodeSpec   `json:"spec"`
	Status RemoteBuildNodeStatus `json:"status,omitempty"`
}

// RemoteBuildNodeSpec says how to reach the host and how its node looks to the scheduler.
type RemoteBuildNodeSpec struct {
	// Address is the host's DNS name or IP address.
	// +kubebuilder:validation:MinLength=1
	Address string `json:"address"`

	// Port is the host's SSH port.
	// +optional
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=65535
	Port int32 `json:"port,omitempty"`

	// User is the SSH user; podman runs rootful, so this is normally root.
	// +optional
	User string `json:"user,omitempty"`

	// SSHSecretRef names the Secret with the private key (key "ssh-privatekey")
	// and the host's known_hosts line(s) (key "known_hosts"). Host keys are
	// checked strictly: there is no trust on first use. The Secret must be
	// in rbn-kubelet's own namespace (rbn-system as manifests/ install it),
	// the only one whose Secrets it reads.
	SSHSecretRef SecretReference `json:"sshSecretRef"`

	// PodmanSocket is the path of podman's API socket on the host.
	// +optional
	PodmanSocket string `json:"podmanSocket,omitempty"`

	// Labels are added to the node, beside the ones read from the host.
	// +optional
	Labels map[string]string `json:"labels,omitempty"`

	// Taints of the node. When unset the node gets
	// rbn.dev/remote-build-node=true:NoSchedule; an empty list means no taint.
	// +optional
	Taints []corev1.Taint `json:"taints,omitempty"`

	// MaxPods is the node's pod capacity.
	// +optional
	// +kubebuilder:validation:Minimum=1
	MaxPods int32 `json:"maxPods,omitempty"`

	// Reserved is subtracted from the host's capacity to give allocatable
	// (cpu, memory, ephemeral-storage).
	// +optional
	Reserved corev1.ResourceList `json:"reserved,omitempty"`

	// HostPathAllowlist lists the host directories (and what is below them)
	// that pods may mount with hostPath volumes. Empty: no hostPath at all.
	// +optional
	HostPathAllowlist []string `json:"hostPathAllowlist,omitempty"`

	// AllowedUnsafeSysctls are the sysctls beyond the kubelet's safe set
	// that pods may set (spec.securityContext.sysctls), as a kubelet's
	// --allowed-unsafe-sysctls: names, or prefixes ending in "*" (net.core.*).
	// Each must be of a namespace a pod has to itself (network, IPC or UTS:
	// net.*, kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*,
	// kernel.domainname). Empty: the safe set alone.
	// +optional
	AllowedUnsafeSysctls []string `json:"allowedUnsafeSysctls,omitempty"`

	// ImagePull says who fetches pods' images from their registries. Direct
	// (the default): the host's podman pulls them itself, so the host must
	// reach the registries. ThroughKubelet: for a host that cannot, rbn-kubelet
	// fetches them with its own network access and the pod's imagePullSecrets,
	// and the host's podman pulls them from rbn-kubelet over the node's SSH
	// connection; layers already on the host are not sent again, credentials
	// never reach the host, and the image keeps the name the pod gave.
	// +optional
	ImagePull ImagePullMode `json:"imagePull,omitempty"`

	// Volumes says where and how rbn makes the host-local volumes of
	// PersistentVolumeClaims of its StorageClass (provisioner
	// rbn.dev/host-local) for pods of this node.
	// +optional
	Volumes *VolumesSpec `json:"volumes,omitempty"`

	// ContainerLogMaxSize bounds each container's log file on the host, as
	// the kubelet's containerLogMaxSize and containerLogMaxFiles together
	// bound its log files: podman's conmon writes the log as a file
	// (podman's k8s-file driver, whatever the host's default) and, when the
	// file reaches this size, starts it again empty, so `kubectl logs` then
	// shows what came after. Default 100Mi: the file holds podman's
	// timestamp and stream tag on every line (about 36 bytes), and a build's
	// log is its record, so the one file gets twice the kubelet's 5 files of
	// 10Mi. At least 1Mi.
	// +optional
	ContainerLogMaxSize *resource.Quantity `json:"containerLogMaxSize,omitempty"`

	// ImageGC says when rbn removes images from the host's podman store, as
	// the kubelet's image garbage collection does: when the store's file
	// system is fuller than highThresholdPercent, unused images go, least
	// recently used first, until it is down to lowThresholdPercent.
	// +optional
	ImageGC *ImageGCSpec `json:"imageGC,omitempty"`

	// DiskPressure says when the host's disk is short, as the kubelet's
	// evictionHard nodefs.available and imagefs.available say it (podman's
	// store holds both here). Then the Node's DiskPressure condition turns
	// True (and the node lifecycle controller taints it), rbn removes the
	// host's unused images, and when that is not enough it evicts the
	// node's pods one at a time, as the kubelet's eviction manager does.
	// +optional
	DiskPressure *DiskPressureSpec `json:"diskPressure,omitempty"`
}

// DiskPressureSpec configures a host's disk pressure.
type DiskPressureSpec struct {
	// AvailableBelow: podman's store's file system with less than this
	// available is under pressure: a percentage of its size ("10%") or a
	// quantity ("20Gi"). Default "10%", the kubelet's nodefs.available;
	// "0%" turns disk pressure off.
	// +optional
	AvailableBelow string `json:"availableBelow,omitempty"`
}

// DefaultDiskAvailableBelow is spec.diskPressure.availableBelow's default.
const DefaultDiskAvailableBelow = "10%"

// ImageGCSpec configures a host's image garbage collection. The fields and
// their defaults are the KubeletConfiguration's (imageGCHighThresholdPercent,
// imageGCLowThresholdPercent, imageMinimumGCAge, imageMaximumGCAge).
//
// An image is unused when no container on the host (of any pod, ended or
// not, and of anything else podman runs there) was made from it, and no pod
// of the node that has not ended names it. Every unused image may go, not
// only those rbn pulled: a build host is the cluster's, as a kubelet's node
// is. Pinned keeps the ones an operator wants kept.
type ImageGCSpec struct {
	// HighThresholdPercent of the store's file system in use starts a
	// collection. Default 85; 100 turns collection by disk use off.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	HighThresholdPercent *int32 `json:"highThresholdPercent,omitempty"`

	// LowThresholdPercent is what a collection frees down to. Default 80;
	// must be below highThresholdPercent.
	// +optional
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	LowThresholdPercent *int32 `json:"lowThresholdPercent,omitempty"`

	// MinimumAge: an image first seen on the host less than this long ago
	// is never removed (it may be about to be used). Default 2m.
	// +optional
	MinimumAge *metav1.Duration `json:"minimumAge,omitempty"`

	// MaximumAge: an image unused for longer than this is removed whatever
	// the disk use. Default 0: never for age alone.
	// +optional
	MaximumAge *metav1.Duration `json:"maximumAge,omitempty"`

	// Pinned images are never removed: references as a pod names them
	// (registry.example/builder:1, or by digest).
	// +optional
	Pinned []string `json:"pinned,omitempty"`
}

// DefaultContainerLogMaxSize and MinContainerLogMaxSize bound
// spec.containerLogMaxSize.
var (
	DefaultContainerLogMaxSize = resource.MustParse("100Mi")
	MinContainerLogMaxSize     = resource.MustParse("1Mi")
)

// Defaults of the image garbage collection: the kubelet's.
const (
	DefaultImageGCHighThresholdPercent = 85
	DefaultImageGCLowThresholdPercent  = 80
	DefaultImageMinimumGCAge           = 2 * time.Minute
)

// VolumesSpec configures a host's dynamically provisioned volumes.
type VolumesSpec struct {
	// Root is the host directory under which each PersistentVolume gets a
	// directory of its own (and, with sizeLimit LoopFile, the file that
	// holds its file system). Default /var/lib/rbn/volumes.
	// +optional
	Root string `json:"root,omitempty"`

	// SizeLimit says how a volume is held to its claim's size. LoopFile
	// (the default): each volume is an ext4 file system in a sparse file of
	// the claim's size, mounted through a loop device, so a write beyond the
	// size fails with ENOSPC and one volume cannot fill the host's disk; the
	// host needs mkfs.ext4 and loop devices. None: a plain directory under
	// root; nothing limits what the pod writes.
	// +optional
	SizeLimit VolumeSizeLimit `json:"sizeLimit,omitempty"`
}

// VolumeSizeLimit is how a provisioned volume's size is enforced.
// +kubebuilder:validation:Enum=LoopFile;None
type VolumeSizeLimit string

const (
	VolumeSizeLimitLoopFile VolumeSizeLimit = "LoopFile"
	VolumeSizeLimitNone     VolumeSizeLimit = "None"
)

// DefaultVolumeRoot is where volumes go on a host whose RemoteBuildNode
// names no root.
const DefaultVolumeRoot = "/var/lib/rbn/volumes"

// ImagePullMode says who reaches the registries for a host's images.
// +kubebuilder:validation:Enum=Direct;ThroughKubelet
type ImagePullMode string

const (
	// ImagePullDirect: the host's podman pulls from the registries itself.
	ImagePullDirect ImagePullMode = "Direct"
	// ImagePullThroughKubelet: rbn-kubelet fetches from the registries and
	// relays to the host's podman over the node's SSH connection.
	ImagePullThroughKubelet ImagePullMode = "ThroughKubelet"
)

// SecretReference names a Secret in a namespace.
type SecretReference struct {
	// +kubebuilder:validation:MinLength=1
	Name string `json:"name"`
	// +kubebuilder:validation:MinLength=1
	Namespace string `json:"namespace"`
}

// Phase summarizes a RemoteBuildNode for people.
// +kubebuilder:validation:Enum=Pending;Ready;NotReady;Invalid
type Phase string

const (
	// PhasePending: rbn-kubelet has not reached the host yet.
	PhasePending Phase = "Pending"
	// PhaseReady: the host answers over SSH and its podman service works.
	PhaseReady Phase = "Ready"
	// PhaseNotReady: the host was configured but fails now; see lastError.
	PhaseNotReady Phase = "NotReady"
	// PhaseInvalid: the spec or its Secret is unusable; see lastError.
	PhaseInvalid Phase = "Invalid"
)

// RemoteBuildNodeStatus is what rbn-kubelet last saw of the host.
type RemoteBuildNodeStatus struct {
	// ObservedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// +optional
	Phase Phase `json:"phase,omitempty"`
	// NodeName is the Kubernetes node serving this host.
	// +optional
	NodeName string `json:"nodeName,omitempty"`
	// Host holds facts read from the host itself.
	// +optional
	Host *HostInfo `json:"host,omitempty"`
	// LastError is the most recent failure, kept after recovery for diagnosis.
	// +optional
	LastError *HostError `json:"lastError,omitempty"`
	// Conditions: Ready, with the reason of the last transition.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// HostInfo holds facts read from the host.
type HostInfo struct {
	Architecture  string `json:"architecture,omitempty"`
	OS            string `json:"os,omitempty"`
	OSImage       string `json:"osImage,omitempty"`
	KernelVersion string `json:"kernelVersion,omitempty"`
	PodmanVersion string `json:"podmanVersion,omitempty"`
	Hostname      string `json:"hostname,omitempty"`
}

// HostError is a failure with a machine-readable reason.
type HostError struct {
	// Reason is a CamelCase cause such as SSHUnreachable or HostKeyMismatch.
	Reason  string      `json:"reason"`
	Message string      `json:"message"`
	Time    metav1.Time `json:"time"`
}

// RemoteBuildNodeList is a list of RemoteBuildNodes.
// +kubebuilder:object:root=true
type RemoteBuildNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RemoteBuildNode `json:"items"`
}
