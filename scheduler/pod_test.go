package scheduler

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

func container(image string, ephemeral string) corev1.Container {
	c := corev1.Container{Name: "c", Image: image}
	if ephemeral != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse(ephemeral)}
	}
	return c
}

func TestNeedsOf(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	sidecar := container("sidecar:1", "1Gi")
	sidecar.RestartPolicy = &always
	limitOnly := container("busybox", "")
	limitOnly.Resources.Limits = corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("3Gi")}

	tests := []struct {
		name       string
		pod        corev1.Pod
		wantBytes  int64
		wantImages []string
		wantArch   string
	}{
		{
			name:       "nothing declared",
			pod:        corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{container("busybox", "")}}},
			wantImages: []string{"docker.io/library/busybox:latest"},
		},
		{
			name: "containers add up, init containers count with their maximum",
			pod: corev1.Pod{Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{container("localhost/rbn/busybox:1.0", "2Gi"), container("localhost/rbn/busybox:1.0", "5Gi")},
				Containers:     []corev1.Container{container("localhost/rbn/busybox:1.0", "1Gi"), container("registry.example.org/kiwi:9", "3Gi")},
			}},
			wantBytes:  (1 + 3 + 5) * Gi,
			wantImages: []string{"localhost/rbn/busybox:1.0", "registry.example.org/kiwi:9"},
		},
		{
			name: "sidecars run beside the app containers; overhead counts",
			pod: corev1.Pod{Spec: corev1.PodSpec{
				InitContainers: []corev1.Container{sidecar, container("busybox", "4Gi")},
				Containers:     []corev1.Container{container("busybox", "1Gi")},
				Overhead:       corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("512Mi")},
			}},
			wantBytes:  (1+1+4)*Gi + 512*Mi,
			wantImages: []string{"docker.io/library/sidecar:1", "docker.io/library/busybox:latest"},
		},
		{
			name: "pod-level resources replace the containers' sum",
			pod: corev1.Pod{Spec: corev1.PodSpec{
				Containers: []corev1.Container{container("busybox", "1Gi"), container("busybox", "1Gi")},
				Resources:  &corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("5Gi")}},
			}},
			wantBytes:  5 * Gi,
			wantImages: []string{"docker.io/library/busybox:latest"},
		},
		{
			name:       "a limit without request counts",
			pod:        corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{limitOnly}}},
			wantBytes:  3 * Gi,
			wantImages: []string{"docker.io/library/busybox:latest"},
		},
		{
			name: "native architecture from the annotation",
			pod: corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{rbnv1.AnnotationNativeArch: "arm64"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{container("busybox:1", "")}},
			},
			wantImages: []string{"docker.io/library/busybox:1"},
			wantArch:   "arm64",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NeedsOf(&tt.pod)
			if got.EphemeralBytes != tt.wantBytes || !slices.Equal(got.Images, tt.wantImages) || got.NativeArch != tt.wantArch {
				t.Errorf("NeedsOf = %+v, want bytes %d images %v arch %q", got, tt.wantBytes, tt.wantImages, tt.wantArch)
			}
		})
	}
}

// TestImageSet: references as podman lists them match those pods name
// (normalisation itself is tested in internal/imageref).
func TestImageSet(t *testing.T) {
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	// Podman lists short tags of local images as localhost/...; pods name them the same way.
	set := NewImageSet([]string{"localhost/rbn/busybox:1.0", "docker.io/library/busybox@" + digest, "not a ref"})
	for _, ref := range []string{"localhost/rbn/busybox:1.0", "docker.io/library/busybox@" + digest, "not a ref"} {
		if !set.Has(ref) {
			t.Errorf("set lacks %q: %v", ref, set)
		}
	}
}
