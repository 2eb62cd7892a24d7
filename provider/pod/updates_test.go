package pod

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestUnappliedChanges(t *testing.T) {
	deadline := int64(60)
	tests := []struct {
		name   string
		change func(*corev1.PodSpec)
		want   []string
	}{
		{"nothing", func(*corev1.PodSpec) {}, nil},
		{"tolerations and grace are not flagged", func(s *corev1.PodSpec) {
			s.Tolerations = []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}}
			grace := int64(5)
			s.TerminationGracePeriodSeconds = &grace
		}, nil},
		{"image", func(s *corev1.PodSpec) { s.Containers[1].Image = "busybox:1.37" }, []string{"spec.containers[1].image"}},
		{"init image", func(s *corev1.PodSpec) { s.InitContainers[0].Image = "busybox:1.37" }, []string{"spec.initContainers[0].image"}},
		{"resize", func(s *corev1.PodSpec) {
			s.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2Gi")}
		}, []string{"spec.containers[0].resources"}},
		{"deadline is applied", func(s *corev1.PodSpec) { s.ActiveDeadlineSeconds = &deadline }, nil},
		{"kubectl debug is applied", func(s *corev1.PodSpec) {
			s.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debugger", Image: "busybox"}}}
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			planned := corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1.36"}},
				Containers:     []corev1.Container{{Name: "a", Image: "busybox:1.36"}, {Name: "b", Image: "busybox:1.36"}},
			}
			current := planned.DeepCopy()
			tt.change(current)
			if got := UnappliedChanges(&planned, current); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
