package provider

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The stages of a pod's start, from the worker's first sight of it to its
// first report as Running (kubelet_pod_start_duration_seconds), as
// rbn_pod_start_stage_duration_seconds splits it: disjoint, they add up to
// the whole.
const (
	// StageConfig: up to the pod's plan (its translation into podman
	// specs), which waits for the ConfigMaps, Secrets and claims it names.
	StageConfig = "config"
	// StageSandbox: up to the sandbox ready: the S3 inputs staged, the pod
	// network, the volumes, the infra container.
	StageSandbox = "sandbox"
	// StageImages: the image pulls after that (relayed or direct).
	StageImages = "images"
	// StageContainers: the rest, up to the report of Running: the init
	// containers, creating and starting the containers, their postStart
	// hooks, the status report.
	StageContainers = "containers"
)

// StartStages lists the stages in their order.
var StartStages = []string{StageConfig, StageSandbox, StageImages, StageContainers}

// startStageBuckets resolve the stages that take milliseconds (config,
// sandbox) as well as the pulls that take an hour.
var startStageBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// newStartStageHistograms are one node's histograms, by stage.
func newStartStageHistograms() map[string]prometheus.Histogram {
	out := make(map[string]prometheus.Histogram, len(StartStages))
	for _, s := range StartStages {
		out[s] = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "rbn_pod_start_stage_duration_seconds", Buckets: startStageBuckets})
	}
	return out
}

// startMarks are the moments of a pod's start that its worker saw (its
// goroutine's alone).
type startMarks struct {
	planned, sandboxed time.Time
	// pulledBefore is the puller's pull time when the sandbox was ready.
	pulledBefore time.Duration
}

// split divides the start from seen to running into the stages, pulled
// being the puller's pull time at running. A mark not seen (a pod taken
// over with its sandbox up) gives its stage nothing.
func (m startMarks) split(seen, running time.Time, pulled time.Duration) map[string]time.Duration {
	planned := latest(seen, m.planned)
	sandboxed := latest(planned, m.sandboxed)
	images := max(pulled-m.pulledBefore, 0)
	rest := max(running.Sub(sandboxed), 0)
	images = min(images, rest)
	return map[string]time.Duration{
		StageConfig:     max(planned.Sub(seen), 0),
		StageSandbox:    max(sandboxed.Sub(planned), 0),
		StageImages:     images,
		StageContainers: rest - images,
	}
}

// latest is t, or before when t is unset.
func latest(before, t time.Time) time.Time {
	if t.IsZero() || t.Before(before) {
		return before
	}
	return t
}
