package pod

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// Labels put on every podman object rbn creates, so that a restarted
// rbn-kubelet can find, re-adopt or remove them.
const (
	LabelPodUID       = "rbn.dev/pod-uid"
	LabelPodNamespace = "rbn.dev/pod-namespace"
	LabelPodName      = "rbn.dev/pod-name"
	LabelNode         = "rbn.dev/node"
	LabelContainer    = "rbn.dev/container" // Kubernetes container name
	LabelInit         = "rbn.dev/init"      // "true" on init containers
	LabelAttempt      = "rbn.dev/attempt"   // restart count of this instance, decimal
	LabelVolume       = "rbn.dev/volume"    // Kubernetes volume name
	LabelRole         = "rbn.dev/role"      // "loader" on the volume loader container
	// LabelBootID is the host's boot id when the container was created
	// (rbn-kubelet adds it, when known): a lost run whose boot id is not
	// the host's now was ended by a reboot.
	LabelBootID = "rbn.dev/boot-id"
)

// Input is everything Translate needs. The pod's env is resolved by
// Translate, not by virtual-kubelet (which the runtime configures with
// SkipDownwardAPIResolution): valueFrom and envFrom arrive unresolved.
type Input struct {
	Pod      *corev1.Pod
	NodeName string
	// PodIP and HostIP are the values of the status.podIP(s) and
	// status.hostIP(s) env fields. The pod IP is only known once the podman
	// pod exists: a translation made before may leave it empty, and the env
	// then holds "" as the kubelet's would, so the runtime translates again
	// with the IP before it creates containers.
	PodIP  string
	HostIP string
	// ClusterDomain is the cluster's DNS domain (kubelet's clusterDomain):
	// the FQDN of a pod with setHostnameAsFQDN and a subdomain is
	// hostname.subdomain.namespace.svc.<ClusterDomain>.
	ClusterDomain string
	// NodeAllocatable is the node's allocatable resources: a
	// resourceFieldRef to a limit the container does not set (limits.cpu,
	// limits.memory, limits.ephemeral-storage) resolves to it, as on a kubelet.
	NodeAllocatable corev1.ResourceList
	// ServiceEnv holds the service variables (KUBERNETES_SERVICE_HOST, ...)
	// the kubelet would add to every container, computed by the caller from
	// Services as the kubelet's getServiceEnvVarMap; nil adds none. They are
	// seen by $(VAR) expansion after the container's own variables and added
	// for names the container does not define.
	ServiceEnv map[string]string
	// Services are the cluster Services the pod's annotation
	// rbn.dev/cluster-services names (ReferencedServices), by namespace and
	// name; a missing one keeps the pod waiting.
	Services map[types.NamespacedName]*corev1.Service
	// HostPathAllowlist: hostPath volumes must lie at or below one of these.
	HostPathAllowlist []string
	// Secrets and ConfigMaps referenced by the pod (volumes, env, envFrom;
	// ReferencedObjects lists their names), by name, from the pod's
	// namespace. A missing entry that the pod does not mark optional is an error.
	Secrets    map[string]*corev1.Secret
	ConfigMaps map[string]*corev1.ConfigMap
	// Claims are the PersistentVolumeClaims of the pod's volumes
	// (ReferencedClaims lists their names), by name, each with the
	// PersistentVolume it is bound to; a missing entry, or one without its
	// volume, is a volume not ready yet.
	Claims map[string]*Claim
	// VolumeRoot is the node's root of provisioned volumes
	// (spec.volumes.root): a volume of the rbn.dev/host-local provisioner
	// must lie below it.
	VolumeRoot string
	// ServiceAccountToken is the token for projected serviceAccountToken
	// sources (requested by the caller through the TokenRequest API).
	ServiceAccountToken string
	// CACert is the cluster CA, for projected kube-root-ca.crt-like sources
	// that name a ConfigMap (filled through ConfigMaps) — kept for callers
	// that add it; may be empty.
	CACert []byte
	// RuntimeHandler is the handler of the pod's RuntimeClass
	// (spec.runtimeClassName), resolved by the caller as the kubelet does
	// through the node.k8s.io API; empty when the pod names none.
	RuntimeHandler string
	// HostRuntimes are the OCI runtimes the host's podman has: a
	// RuntimeHandler must be one of them.
	HostRuntimes []string
	// AllowedUnsafeSysctls are the sysctls outside the kubelet's safe set
	// that this node allows (the kubelet's --allowed-unsafe-sysctls): names,
	// or prefixes ending in "*".
	AllowedUnsafeSysctls []string
	// ContainerLogMaxBytes bounds each container's log file (the node's
	// spec.containerLogMaxSize); 0: the host's podman default.
	ContainerLogMaxBytes int64
	// RootlessHost: the host's podman runs rootless, where it creates no
	// pod cgroup, so pod-level resources cannot be enforced.
	RootlessHost bool
	// HostDNS is the build host's resolv.conf as podman reads it for a pod
	// (ParseResolvConf of it), the base a dnsConfig is merged onto; needed
	// only when NeedsHostDNS says so.
	HostDNS *ResolvConf
	// Network is the host's podman network the pod joins (the node's
	// block of rbn's pod network); empty: the host's default network.
	Network string
}

// Plan is the podman side of one pod.
type Plan struct {
	// PodName is the podman pod's name: "rbn-" + pod UID.
	PodName  string
	Hostname string
	// Labels go on the podman pod, every volume and every container.
	Labels map[string]string
	// Network is the host's podman network the pod's sandbox joins; empty:
	// podman's default network.
	Network string `json:",omitempty"`
	// HostPorts are published on the host (containers[*].ports[*].hostPort).
	HostPorts []HostPort
	// HostAliases are the pod's /etc/hosts entries (spec.hostAliases), one
	// "hostname:ip" per hostname, in the order the kubelet writes them.
	HostAliases []string
	// ClusterServices are the cluster Services the pod reaches through rbn
	// (annotation rbn.dev/cluster-services), their names in HostAliases.
	ClusterServices []ClusterService `json:",omitempty"`
	// ShareProcessNamespace: the pod's containers share one PID namespace,
	// the infra container's, whose pause process is PID 1.
	ShareProcessNamespace bool
	// Sysctls are the pod's namespaced sysctls (spec.securityContext.sysctls),
	// by dotted name; set on the pod's network and IPC namespaces, which
	// every container shares.
	Sysctls map[string]string
	// ContainerLogMaxBytes: each container's log is a file that conmon
	// starts again empty when it reaches this size; 0: the host's podman
	// decides (its log driver and size).
	ContainerLogMaxBytes int64 `json:",omitempty"`
	// OCIRuntime is the host's OCI runtime that runs the pod's containers,
	// the handler of its RuntimeClass; empty: podman's default.
	OCIRuntime string
	// DNS is the pod's resolv.conf, exactly (spec.dnsPolicy and
	// spec.dnsConfig, as the kubelet forms it); nil: podman writes it from
	// the host's, which is dnsPolicy Default.
	DNS *ResolvConf `json:",omitempty"`
	// FSGroup (spec.securityContext.fsGroup) owns the pod's emptyDir and
	// Files volumes, as the kubelet's SetVolumeOwnership makes them: the
	// runtime creates emptyDirs group-owned by it, setgid and writable by
	// all (the kubelet's 0777 emptyDir root), and writes Files volumes'
	// files and directories with it as group (their directories setgid;
	// the files' modes, group-readable, are in Files). hostPath volumes
	// are left as they are. Every container has it as a supplemental group.
	FSGroup *int64 `json:",omitempty"`
	// Resources bound the podman pod's cgroup (spec.resources); nil when
	// the pod sets no pod-level resources.
	Resources *PodResources `json:",omitempty"`
	Volumes   []Volume
	// TerminationVolume is the podman named volume that holds one empty
	// file per container run, bind-mounted at the container's
	// terminationMessagePath (as the kubelet mounts a file of its pod
	// directory there); "" when no container has a path.
	TerminationVolume string `json:",omitempty"`
	// Transfers are the pod's S3 transfers (annotation rbn.dev/transfers),
	// defaulted and valid; nil when it declares none.
	Transfers *rbnv1.Transfers
	// InitContainers run in order, each to completion, before Containers.
	InitContainers []Container
	Containers     []Container
	// EphemeralContainers are the debug containers added to the running
	// pod (kubectl debug), each run once, never restarted.
	EphemeralContainers []Container `json:",omitempty"`
	// Warnings are the fields the pod sets that rbn runs it without (limits
	// it does not enforce, a termination message path): accepted, because
	// real specs are full of them, but listed so that the runtime tells the
	// user with a Warning event each. In field order.
	Warnings []Warning
	// InvalidEnvKeys are the envFrom keys left out of the environment
	// because they are not valid variable names, each as
	// `configMap NAME: key "KEY"` or `secret NAME: key "KEY"` (KEY with the
	// envFrom prefix), once each, for the runtime's
	// InvalidEnvironmentVariableNames Warning event.
	InvalidEnvKeys []string
	// UsesPodIP says that some container's env names status.podIP(s): its
	// containers can only be created once the pod has its IP (see
	// Input.PodIP).
	UsesPodIP bool
}

// Reasons of the Warning events for Plan.Warnings.
const (
	// WarningStdinOnce: stdinOnce is not passed to podman.
	WarningStdinOnce = "StdinOnceIgnored"
	// WarningPortNotRelayed: a UDP or SCTP port, which Services cannot
	// reach (rbn-portal relays TCP).
	WarningPortNotRelayed = "PortNotRelayed"
)

// Warning is a field the pod runs without.
type Warning struct {
	// Field is the field's path, e.g. spec.containers[0].livenessProbe.
	Field string
	// Reason is the event's reason (Warning*).
	Reason  string
	Message string
}

// HostPort is a port published on the host for the whole pod.
type HostPort struct {
	ContainerPort int32
	HostPort      int32
	HostIP        string
	Protocol      string // "tcp" or "udp"
}

// VolumeKind says how a volume is provided on the host.
type VolumeKind string

const (
	// VolumeEmptyDir is a podman named volume, removed with the pod.
	VolumeEmptyDir VolumeKind = "EmptyDir"
	// VolumeFiles is a podman named volume filled with Files before any
	// container starts (secret, configMap, downwardAPI, projected).
	VolumeFiles VolumeKind = "Files"
	// VolumeHostPath is a bind mount of an allowed host path.
	VolumeHostPath VolumeKind = "HostPath"
)

// Volume is one pod volume on the host.
type Volume struct {
	// K8sName is the volume's name in the pod spec.
	K8sName string
	Kind    VolumeKind
	// PodmanName is the named volume for EmptyDir and Files: "rbn-" + pod UID + "-" + K8sName.
	PodmanName string
	// Tmpfs: emptyDir with medium Memory. The pod's infra container holds
	// tmpfs volumes mounted (at /rbn-keep/<K8sName>) so that their content
	// outlives each container, as an emptyDir outlives its containers.
	Tmpfs bool
	// SizeLimitBytes from emptyDir.sizeLimit; 0 when unset. Applied to tmpfs.
	SizeLimitBytes int64
	// Files to write into a Files volume, sorted by Path.
	Files []File
	// HostPath is the host path of a VolumeHostPath, in clean form, and
	// HostPathType its type, which the runtime checks (or creates the path
	// for) on the host before mounting it, as the kubelet does.
	HostPath     string
	HostPathType corev1.HostPathType
	// Claim is the PersistentVolumeClaim a VolumeHostPath comes from, a
	// local or hostPath PersistentVolume, or one of rbn's (Provisioned).
	Claim string `json:",omitempty"`
	// Provisioned is the rbn.dev/host-local volume of Claim, which the
	// runtime mounts on the host (after a reboot) before HostPath exists.
	Provisioned *ProvisionedVolume `json:",omitempty"`
	// ReadOnly mounts the volume read-only in every container (a claim's
	// readOnly).
	ReadOnly bool `json:",omitempty"`
}

// Claim is a PersistentVolumeClaim and the PersistentVolume it is bound
// to (nil while it is not, or not seen yet).
type Claim struct {
	PVC *corev1.PersistentVolumeClaim
	PV  *corev1.PersistentVolume
}

// ProvisionedVolume is where a volume of rbn's provisioner is on its host
// (see internal/hostvolume): its directory, and the file holding its file
// system ("" for a plain directory).
type ProvisionedVolume struct {
	Dir, Image string
}

// File is one file of a Files volume.
type File struct {
	// Path is relative to the volume root, slash-separated, never absolute
	// and never escaping (no "..").
	Path string
	Data []byte
	// Mode is the file's permission bits (defaultMode or the item's mode;
	// 0644 by default), made readable by owner and group (|0440) under an
	// fsGroup, as the kubelet's SetVolumeOwnership does for a read-only volume.
	Mode int32
}

// Container is one planned container.
type Container struct {
	// K8sName is the container's name in the pod spec.
	K8sName string
	Init    bool
	// Sidecar: a native sidecar (an init container with restartPolicy
	// Always), which keeps running beside the app containers.
	Sidecar bool `json:",omitempty"`
	// Ephemeral: a debug container (spec.ephemeralContainers), which runs
	// in the process namespace of TargetContainer when set.
	Ephemeral       bool   `json:",omitempty"`
	TargetContainer string `json:",omitempty"`
	// StopSignal stops the container (lifecycle.stopSignal, checked by
	// SignalNumber); "": the image's, else SIGTERM.
	StopSignal string `json:",omitempty"`
	Image      string
	PullPolicy corev1.PullPolicy
	// TerminationMessagePath is where the run's termination message file
	// is mounted ("": none).
	TerminationMessagePath string `json:",omitempty"`
	// Entrypoint and Command follow Kubernetes: command replaces the image's
	// ENTRYPOINT, args its CMD; nil keeps the image's.
	Entrypoint []string
	Command    []string
	// Env is the resolved environment: envFrom, env and service variables,
	// nothing left to look up; nil when empty.
	Env        map[string]string
	WorkingDir string
	Mounts     []Mount
	// Resources are the limits enforced on the host (requests only matter to the scheduler).
	MemoryLimitBytes int64 // 0: none
	CPUQuotaMicros   int64 // per CPUPeriodMicros; 0: none
	CPUPeriodMicros  uint64
	CPUShares        uint64 // from requests.cpu, as kubelet does (2 minimum)
	// Security.
	Privileged bool
	CapAdd     []string // as in the pod spec: "SYS_ADMIN"
	CapDrop    []string
	User       string // "uid" or "uid:gid"; empty: image default
	// Groups are the supplemental group IDs (the pod's supplementalGroups),
	// added to those of the user's image memberships (see translate's
	// supplementalGroups).
	Groups         []int64
	ReadOnlyRootfs bool
	// NoNewPrivileges from allowPrivilegeEscalation: false (the usual
	// hardened spec), so that setuid binaries cannot regain privileges.
	NoNewPrivileges bool
	// TTY and Stdin as in the container spec (for attach and exec).
	TTY       bool
	Stdin     bool
	StdinOnce bool
}

// PodResources are the pod-level resources enforced on the pod's cgroup,
// computed as for a container (Container's fields of the same names).
type PodResources struct {
	MemoryLimitBytes int64 // 0: none
	CPUQuotaMicros   int64 // per CPUPeriodMicros; 0: none
	CPUPeriodMicros  uint64
	CPUShares        uint64
}

// Mount is a volume mounted into a container.
type Mount struct {
	// Volume is the K8sName of a Plan volume.
	Volume    string
	MountPath string
	SubPath   string // relative to the volume root; "" for the whole volume
	ReadOnly  bool
}

// TerminationLogs is the key of the termination volume's host directory in
// ContainerSpec's mountpoints. Not a DNS label, so no pod volume's name.
const TerminationLogs = ":termination"

// TerminationVolumeName is the podman volume of a pod's termination message
// files. Its suffix starts with '-', which a pod volume's name cannot.
func TerminationVolumeName(uid types.UID) string { return VolumeName(uid, "-termination") }

// TerminationFile is the name, in the termination volume, of the file of
// one run of a container: a new run gets a new, empty file, so that it
// never reports the message of the run before (the kubelet, too, mounts a
// new file per run).
func TerminationFile(k8sName string, attempt int) string {
	return k8sName + "-" + strconv.Itoa(attempt)
}

// PodName is the podman pod name for a Kubernetes pod UID.
func PodName(uid types.UID) string { return "rbn-" + string(uid) }

// InfraName is the name of the podman pod's infra container, known before
// the pod is created so that a new pod's needs no lookup. No container run
// is named so: their names end in the attempt number.
func (p *Plan) InfraName() string { return p.PodName + "-infra" }

// VolumeName is the podman volume name of a pod volume.
func VolumeName(uid types.UID, k8sName string) string { return "rbn-" + string(uid) + "-" + k8sName }

// ContainerName is the podman container name of one run of a container:
// attempt is the restart count, so every restart is a new, findable container.
func ContainerName(uid types.UID, k8sName string, attempt int) string {
	return "rbn-" + string(uid) + "-" + k8sName + "-" + strconv.Itoa(attempt)
}

// UnsupportedError is a pod the translation refuses, naming why.
type UnsupportedError struct {
	// Field is the offending field path, e.g. spec.volumes[2].persistentVolumeClaim.
	Field string
	// Reason is CamelCase for the pod's status reason, e.g. UnsupportedVolume.
	Reason string
	Detail string
}

func (e *UnsupportedError) Error() string { return e.Field + ": " + e.Detail }
