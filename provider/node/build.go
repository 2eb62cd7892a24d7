package node

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/version"
)

// memoryPressureBelow is the memory pressure threshold, the kubelet's
// default hard eviction threshold.
var memoryPressureBelow = resource.MustParse("100Mi")

// Health is the host's state as rbn-kubelet last saw it.
type Health struct {
	Ready   bool
	Reason  string // CamelCase, set when not ready
	Message string
	// Since is when Ready last changed.
	Since time.Time
}

// Facts is everything about the host and the serving process that a Node shows.
type Facts struct {
	// Host is nil until the host was reached once.
	Host   *podman.HostInfo
	Health Health
	// Now stamps heartbeat times.
	Now time.Time
	// KubeletAddress and KubeletPort are where the apiserver reaches the kubelet API.
	KubeletAddress string
	KubeletPort    int32
}

// Build returns the Node for a defaulted, valid spec.
func Build(name string, spec *rbnv1.RemoteBuildNodeSpec, f Facts) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      Labels(spec, f.Host),
			Annotations: map[string]string{rbnv1.AnnotationManagedTaints: ManagedTaints(spec.Taints)},
		},
		Spec: corev1.NodeSpec{Taints: append([]corev1.Taint(nil), spec.Taints...)},
	}
	n.Labels[rbnv1.LabelNode] = name
	n.Status.DaemonEndpoints.KubeletEndpoint.Port = f.KubeletPort
	if f.KubeletAddress != "" {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: f.KubeletAddress})
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	n.Status.NodeInfo = corev1.NodeSystemInfo{KubeletVersion: version.KubeletVersion}
	if h := f.Host; h != nil {
		n.Status.NodeInfo.Architecture = h.Arch
		n.Status.NodeInfo.OperatingSystem = h.OS
		n.Status.NodeInfo.KernelVersion = h.Kernel
		n.Status.NodeInfo.BootID = h.BootID
		n.Status.NodeInfo.OSImage = h.Distribution
		n.Status.NodeInfo.ContainerRuntimeVersion = "podman://" + h.PodmanVersion
		n.Status.Capacity, n.Status.Allocatable = Resources(spec, h)
		n.Status.RuntimeHandlers = RuntimeHandlers(h)
	} else {
		// Never reached: nothing to offer the scheduler.
		zero := corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}
		n.Status.Capacity, n.Status.Allocatable = zero, zero.DeepCopy()
	}
	n.Status.Conditions = Conditions(spec, f)
	return n
}

// RuntimeHandlers are the node's status.runtimeHandlers: the default
// handler (""), which pods without a RuntimeClass get, then each OCI
// runtime of the host's podman by name, the handlers a RuntimeClass may
// name, as a kubelet lists its container runtime's. Neither feature is
// offered: rbn refuses recursiveReadOnly: Enabled and hostUsers: false.
func RuntimeHandlers(h *podman.HostInfo) []corev1.NodeRuntimeHandler {
	out := []corev1.NodeRuntimeHandler{{Name: "", Features: noRuntimeFeatures()}}
	for _, name := range h.OCIRuntimes {
		out = append(out, corev1.NodeRuntimeHandler{Name: name, Features: noRuntimeFeatures()})
	}
	return out
}

func noRuntimeFeatures() *corev1.NodeRuntimeHandlerFeatures {
	return &corev1.NodeRuntimeHandlerFeatures{RecursiveReadOnlyMounts: ptr.To(false), UserNamespaces: ptr.To(false)}
}

// Labels are the operator's labels plus those read from the host.
func Labels(spec *rbnv1.RemoteBuildNodeSpec, h *podman.HostInfo) map[string]string {
	l := map[string]string{
		rbnv1.LabelRemoteBuildNode: "true",
		"type":                     "virtual-kubelet",
	}
	for k, v := range spec.Labels {
		l[k] = v
	}
	if h != nil {
		l[corev1.LabelArchStable] = h.Arch
		l[corev1.LabelOSStable] = h.OS
		if h.Hostname != "" {
			l[corev1.LabelHostname] = h.Hostname
		}
	}
	return l
}

// Resources computes capacity from the host and allocatable as capacity less
// the reserve, floored at zero.
func Resources(spec *rbnv1.RemoteBuildNodeSpec, h *podman.HostInfo) (capacity, allocatable corev1.ResourceList) {
	capacity = corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(h.CPUs), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(h.MemTotal, resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(int64(spec.MaxPods), resource.DecimalSI),
	}
	if h.StorageTotal > 0 {
		capacity[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(h.StorageTotal), resource.BinarySI)
	}
	allocatable = corev1.ResourceList{}
	for name, c := range capacity {
		a := c.DeepCopy()
		a.Sub(spec.ReservedOrZero(name))
		if a.Sign() < 0 {
			a = *resource.NewQuantity(0, c.Format)
		}
		allocatable[name] = a
	}
	return capacity, allocatable
}

// Conditions reports Ready from the host's health and the pressure
// conditions from its figures, as kubelet's defaults judge them.
func Conditions(spec *rbnv1.RemoteBuildNodeSpec, f Facts) []corev1.NodeCondition {
	since := metav1.NewTime(f.Health.Since)
	now := metav1.NewTime(f.Now)
	cond := func(t corev1.NodeConditionType, s corev1.ConditionStatus, reason, msg string) corev1.NodeCondition {
		return corev1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: since}
	}
	ready := cond(corev1.NodeReady, corev1.ConditionTrue, "KubeletReady", "rbn-kubelet reaches the host and its podman service")
	if !f.Health.Ready {
		ready = cond(corev1.NodeReady, corev1.ConditionFalse, f.Health.Reason, f.Health.Message)
	}
	conds := []corev1.NodeCondition{ready}
	h := f.Host
	if h == nil {
		unknown := "host not reached yet"
		return append(conds,
			cond(corev1.NodeMemoryPressure, corev1.ConditionUnknown, "NodeStatusUnknown", unknown),
			cond(corev1.NodeDiskPressure, corev1.ConditionUnknown, "NodeStatusUnknown", unknown),
			cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "no PID figures from podman"))
	}
	// kubelet's memory.available counts reclaimable page cache as
	// available; MemFree alone would call a host with a big cache short.
	avail, what := h.MemAvailable, "available"
	if avail <= 0 {
		avail, what = h.MemFree, "free"
	}
	mem := cond(corev1.NodeMemoryPressure, corev1.ConditionFalse, "KubeletHasSufficientMemory", fmt.Sprintf("%d bytes %s", avail, what))
	if avail < memoryPressureBelow.Value() {
		mem = cond(corev1.NodeMemoryPressure, corev1.ConditionTrue, "KubeletHasInsufficientMemory",
			fmt.Sprintf("%d bytes %s, below %s", avail, what, memoryPressureBelow.String()))
	}
	disk := cond(corev1.NodeDiskPressure, corev1.ConditionFalse, "KubeletHasNoDiskPressure", "podman storage has room")
	if d := DiskPressure(spec, h); d.Under {
		disk = cond(corev1.NodeDiskPressure, corev1.ConditionTrue, "KubeletHasDiskPressure",
			fmt.Sprintf("podman storage %s: %d of %d bytes available, below %s", h.GraphRoot, d.Available, h.StorageTotal, d.Below))
	}
	pid := cond(corev1.NodePIDPressure, corev1.ConditionFalse, "KubeletHasSufficientPID", "no PID pressure reported")
	return append(conds, mem, disk, pid)
}

// DiskAvailability is the host's podman store against the spec's
// diskPressure.availableBelow.
type DiskAvailability struct {
	// Under: less is available than the threshold (false while the
	// store's figures are unknown).
	Under bool
	// Available and Threshold are in bytes; Below is the threshold as the
	// spec wrote it.
	Available, Threshold uint64
	Below                string
}

// DiskPressure reads the host's podman store against the spec's
// diskPressure.availableBelow.
func DiskPressure(spec *rbnv1.RemoteBuildNodeSpec, h *podman.HostInfo) DiskAvailability {
	d := DiskAvailability{Below: rbnv1.DefaultDiskAvailableBelow}
	if spec.DiskPressure != nil && spec.DiskPressure.AvailableBelow != "" {
		d.Below = spec.DiskPressure.AvailableBelow
	}
	if h == nil || h.StorageTotal == 0 {
		return d
	}
	d.Available = h.StorageAvailable
	threshold, err := rbnv1.DiskThreshold(d.Below, h.StorageTotal)
	d.Threshold = threshold
	d.Under = err == nil && d.Available < threshold
	return d
}
