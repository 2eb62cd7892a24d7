package pod

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// The kubelet's CPU arithmetic (pkg/kubelet/cm: MilliCPUToShares,
// MilliCPUToQuota), reproduced so that a container gets on a build host the
// same CFS share and quota it would get on a kubelet node.
const (
	cpuPeriodMicros = 100000 // kubelet's default CFS period
	minQuotaMicros  = 1000   // kubelet's floor: quotas below 1ms are rejected by the kernel
	minShares       = 2      // kubelet's floor, also what a container without any request gets
	maxShares       = 262144 // kernel's ceiling for cpu.shares
	sharesPerCPU    = 1024
	milliCPUToCPU   = 1000
)

// milliCPUToShares converts a CPU request to cpu.shares. No request means
// minShares, as for the kubelet's BestEffort containers: giving them podman's
// default 1024 instead would rank them above containers that request less
// than one CPU.
func milliCPUToShares(milliCPU int64) uint64 {
	if milliCPU <= 0 {
		return minShares
	}
	shares := milliCPU * sharesPerCPU / milliCPUToCPU
	if shares < minShares {
		return minShares
	}
	if shares > maxShares {
		return maxShares
	}
	return uint64(shares)
}

// milliCPUToQuota converts a CPU limit to a CFS quota per cpuPeriodMicros;
// 0 means no limit.
func milliCPUToQuota(milliCPU int64) int64 {
	if milliCPU <= 0 {
		return 0
	}
	quota := milliCPU * cpuPeriodMicros / milliCPUToCPU
	if quota < minQuotaMicros {
		return minQuotaMicros
	}
	return quota
}

// applyResources fills the enforced resources of c. Only cpu and memory are
// enforced, as by the kubelet on the container's cgroup; other resources
// (ephemeral-storage, hugepages, extended resources) were matched by the
// scheduler against the node's capacity and have no per-container knob here.
//
// podLimits are the pod-level limits (spec.resources.limits), nil when the
// pod sets none: as the kubelet's getCPULimit and getMemoryLimit, a
// container without a limit of its own then gets the pod's, so that what
// reads its cgroup (a JVM, a build tool sizing its workers) sees the bound
// the pod cgroup enforces anyway.
func applyResources(c *Container, r corev1.ResourceRequirements, podLimits corev1.ResourceList) {
	if mem := limitOrPod(r.Limits, podLimits, corev1.ResourceMemory); !mem.IsZero() {
		c.MemoryLimitBytes = mem.Value()
	}
	if cpu := limitOrPod(r.Limits, podLimits, corev1.ResourceCPU); !cpu.IsZero() {
		if quota := milliCPUToQuota(cpu.MilliValue()); quota > 0 {
			c.CPUQuotaMicros = quota
			c.CPUPeriodMicros = cpuPeriodMicros
		}
	}
	c.CPUShares = milliCPUToShares(cpuRequestMilli(r))
}

// limitOrPod is the container's limit of name, or the pod's when the
// container's is unset or zero (the kubelet's IsZero test).
func limitOrPod(own, pod corev1.ResourceList, name corev1.ResourceName) resource.Quantity {
	if q, ok := own[name]; ok && !q.IsZero() {
		return q
	}
	return pod[name]
}

// podResources checks and renders the pod-level resources
// (spec.resources): limits.cpu and limits.memory bound the podman pod's
// cgroup, requests.cpu gives it its CPU shares, as the kubelet sizes the
// pod cgroup from them. The API allows only cpu and memory there (and
// hugepages behind a gate); anything else is refused rather than dropped.
// nil when the pod sets none.
func podResources(r *corev1.ResourceRequirements) (*PodResources, error) {
	if r == nil || len(r.Limits) == 0 && len(r.Requests) == 0 {
		return nil, nil
	}
	for _, l := range []struct {
		field string
		list  corev1.ResourceList
	}{{"spec.resources.limits", r.Limits}, {"spec.resources.requests", r.Requests}} {
		for name := range l.list {
			if name != corev1.ResourceCPU && name != corev1.ResourceMemory {
				return nil, unsupported(l.field, ReasonUnsupportedField,
					"pod-level resource %q is not supported on remote build nodes (only cpu and memory)", name)
			}
		}
	}
	out := &PodResources{}
	if mem, ok := r.Limits[corev1.ResourceMemory]; ok && !mem.IsZero() {
		out.MemoryLimitBytes = mem.Value()
	}
	if cpu, ok := r.Limits[corev1.ResourceCPU]; ok {
		if quota := milliCPUToQuota(cpu.MilliValue()); quota > 0 {
			out.CPUQuotaMicros = quota
			out.CPUPeriodMicros = cpuPeriodMicros
		}
	}
	out.CPUShares = milliCPUToShares(cpuRequestMilli(*r))
	return out, nil
}

// cpuRequestMilli is the effective CPU request: Kubernetes defaults a missing
// request to the limit (the API server does it on admission; doing it again
// keeps the translation right for pods that skipped defaulting).
func cpuRequestMilli(r corev1.ResourceRequirements) int64 {
	if req, ok := r.Requests[corev1.ResourceCPU]; ok {
		return req.MilliValue()
	}
	if lim, ok := r.Limits[corev1.ResourceCPU]; ok {
		return lim.MilliValue()
	}
	return 0
}
