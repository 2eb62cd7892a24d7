package scheduler

import (
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

const (
	Mi = int64(1) << 20
	Gi = int64(1) << 30
)

var now = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

var testPolicy = Policy{MaxFactsAge: 2 * time.Minute, LoadTolerance: 2}

// node builds a Node the way rbn-kubelet does, with options applied.
func node(name string, opts ...func(*corev1.Node)) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		Labels: map[string]string{
			rbnv1.LabelRemoteBuildNode: "true",
			corev1.LabelArchStable:     "amd64",
		},
		Annotations: map[string]string{},
	}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func notRBN(n *corev1.Node)   { delete(n.Labels, rbnv1.LabelRemoteBuildNode) }
func draining(n *corev1.Node) { n.Labels[rbnv1.LabelDraining] = "true" }
func arch(a string) func(*corev1.Node) {
	return func(n *corev1.Node) { n.Labels[corev1.LabelArchStable] = a }
}

// facts publishes f (ObservedAt defaults to now).
func facts(f rbnv1.HostFacts) func(*corev1.Node) {
	return func(n *corev1.Node) {
		if f.ObservedAt.IsZero() {
			f.ObservedAt = metav1.NewTime(now)
		}
		b, err := json.Marshal(f)
		if err != nil {
			panic(err)
		}
		n.Annotations[rbnv1.AnnotationHostFacts] = string(b)
	}
}

// published sets the host-facts annotation verbatim, for JSON that
// rbnv1.HostFacts cannot produce (a field missing, null).
func published(s string) func(*corev1.Node) {
	return func(n *corev1.Node) { n.Annotations[rbnv1.AnnotationHostFacts] = s }
}

func override(s string) func(*corev1.Node) {
	return func(n *corev1.Node) { n.Annotations[rbnv1.AnnotationHostFactsOverride] = s }
}

func healthy(free int64, images ...string) rbnv1.HostFacts {
	return rbnv1.HostFacts{Healthy: true, StorageFreeBytes: free, TmpFreeBytes: -1, VolumeFreeBytes: -1, Images: images}
}

func view(n *corev1.Node, bound int) NodeView {
	return NodeView{Info: NewNodeInfo(n), Name: n.Name, BoundPods: bound}
}

func mustNeeds(t *testing.T, p *corev1.Pod) PodNeeds {
	t.Helper()
	return NeedsOf(p)
}

type rbnv1HostFacts = rbnv1.HostFacts

func staleTime() metav1.Time { return metav1.NewTime(now.Add(-time.Hour)) }
