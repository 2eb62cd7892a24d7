package scheduler

import (
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// BenchmarkDecisions times the decisions alone (no JSON, no cache) for a pod
// with four images over 100 build hosts publishing 60 images each; the full
// per-call path is BenchmarkExtender in scheduler/server.
//
//	go test -run '^$' -bench Decisions ./scheduler/
func BenchmarkDecisions(b *testing.B) {
	views := make([]NodeView, 100)
	for i := range views {
		images := make([]string, 60)
		for j := range images {
			images[j] = fmt.Sprintf("registry.example.org/team-%d/image-%d:1.%d", j%7, j, i%3)
		}
		f := healthy(int64(i)*Gi, images...)
		f.RunningPods = i % 12
		views[i] = view(node(fmt.Sprintf("build-host-%03d", i), facts(f)), 10)
	}
	c := func(image string) corev1.Container {
		return corev1.Container{Name: "c", Image: image, Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("20Gi")}}}
	}
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		InitContainers: []corev1.Container{c("registry.example.org/tools/fetch:2.1"), c("registry.example.org/tools/prepare:2.1")},
		Containers:     []corev1.Container{c("registry.example.org/kiwi/builder:9.24"), c("registry.example.org/tools/upload:2.1")},
	}}
	p := testPolicy
	p.DefaultImageSizeBytes = Gi
	run := func(b *testing.B, f func()) {
		d := make([]time.Duration, 0, b.N)
		b.ReportAllocs()
		for b.Loop() {
			start := time.Now()
			f()
			d = append(d, time.Since(start))
		}
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Nanoseconds())/1e3, "p50-µs")
		b.ReportMetric(float64(d[len(d)*99/100].Nanoseconds())/1e3, "p99-µs")
	}
	b.Run("needs", func(b *testing.B) { run(b, func() { NeedsOf(pod) }) })
	b.Run("filter", func(b *testing.B) { run(b, func() { Filter(NeedsOf(pod), views, now, p) }) })
	b.Run("prioritize", func(b *testing.B) { run(b, func() { Prioritize(NeedsOf(pod), views, now, p) }) })
}
