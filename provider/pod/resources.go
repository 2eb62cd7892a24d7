package pod

import (
	corev1 "k8s.io/api/core/v1"
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
func applyResources(c *Container, r corev1.ResourceRequirements) {
	if mem, ok := r.Limits[corev1.ResourceMemory]; ok {
		c.MemoryLimitBytes = mem.Value()
	}
	if cpu, ok := r.Limits[corev1.ResourceCPU]; ok {
		if quota := milliCPUToQuota(cpu.MilliValue()); quota > 0 {
			c.CPUQuotaMicros = quota
			c.CPUPeriodMicros = cpuPeriodMicros
		}
	}
	c.CPUShares = milliCPUToShares(cpuRequestMilli(r))
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
