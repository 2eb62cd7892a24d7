package scheduler

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// fakeClaims is a Claims of fixed claims (by namespace/name) and classes.
type fakeClaims struct {
	claims  map[string]*corev1.PersistentVolumeClaim
	classes map[string]string
}

func (f fakeClaims) Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool) {
	c, ok := f.claims[namespace+"/"+name]
	return c, ok
}

func (f fakeClaims) Provisioner(class string) (string, bool) {
	p, ok := f.classes[class]
	return p, ok
}

func pvc(name string, class *string, size, volume string) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: class, VolumeName: volume},
	}
	if size != "" {
		c.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
	}
	return c
}

func claimVolume(volume, claim string) corev1.Volume {
	return corev1.Volume{Name: volume, VolumeSource: corev1.VolumeSource{
		PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claim},
	}}
}

func TestVolumeBytes(t *testing.T) {
	local, other := ptr.To("rbn-host-local"), ptr.To("ceph-rbd")
	src := fakeClaims{
		claims: map[string]*corev1.PersistentVolumeClaim{},
		classes: map[string]string{
			"rbn-host-local": rbnv1.ProvisionerHostLocal,
			"ceph-rbd":       "rbd.csi.ceph.com",
			"unused":         rbnv1.ProvisionerHostLocal,
		},
	}
	for _, c := range []*corev1.PersistentVolumeClaim{
		pvc("work", local, "2Gi", ""),
		pvc("cache", local, "512Mi", ""),
		pvc("bound", local, "8Gi", "pvc-123"),
		pvc("rbd", other, "8Gi", ""),
		pvc("no-class", nil, "8Gi", ""),
		pvc("static", ptr.To(""), "8Gi", ""),
		pvc("class-not-cached", ptr.To("new-class"), "8Gi", ""),
		pvc("no-size", local, "", ""),
		pvc("build-scratch", local, "1Gi", ""), // the ephemeral volume "scratch" of pod "build"
	} {
		src.claims["ns/"+c.Name] = c
	}
	tests := []struct {
		name       string
		volumes    []corev1.Volume
		wantClaims []string
		want       int64
	}{
		{name: "no volumes"},
		{name: "an emptyDir is no claim", volumes: []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}},
		{
			name:       "unbound claims of rbn.dev/host-local add up",
			volumes:    []corev1.Volume{claimVolume("a", "work"), claimVolume("b", "cache")},
			wantClaims: []string{"work", "cache"},
			want:       2*Gi + 512*Mi,
		},
		{
			name:       "a claim mounted twice counts once",
			volumes:    []corev1.Volume{claimVolume("a", "work"), claimVolume("b", "work")},
			wantClaims: []string{"work"},
			want:       2 * Gi,
		},
		{name: "a bound claim counts nothing", volumes: []corev1.Volume{claimVolume("a", "bound")}, wantClaims: []string{"bound"}},
		{name: "another provisioner's claim counts nothing", volumes: []corev1.Volume{claimVolume("a", "rbd")}, wantClaims: []string{"rbd"}},
		{
			name:       "claims without a class, or class \"\", count nothing",
			volumes:    []corev1.Volume{claimVolume("a", "no-class"), claimVolume("b", "static")},
			wantClaims: []string{"no-class", "static"},
		},
		{
			name:       "a claim or class not in the cache counts nothing",
			volumes:    []corev1.Volume{claimVolume("a", "not-cached"), claimVolume("b", "class-not-cached"), claimVolume("c", "work")},
			wantClaims: []string{"not-cached", "class-not-cached", "work"},
			want:       2 * Gi,
		},
		{name: "a claim without a size counts nothing", volumes: []corev1.Volume{claimVolume("a", "no-size")}, wantClaims: []string{"no-size"}},
		{
			name: "a generic ephemeral volume's claim is <pod>-<volume>",
			volumes: []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{
				Ephemeral: &corev1.EphemeralVolumeSource{VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{}},
			}}, claimVolume("w", "work")},
			wantClaims: []string{"build-scratch", "work"},
			want:       3 * Gi,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: "ns"}, Spec: corev1.PodSpec{Volumes: tt.volumes}}
			if got := ClaimNames(pod); !slices.Equal(got, tt.wantClaims) {
				t.Errorf("ClaimNames = %v, want %v", got, tt.wantClaims)
			}
			if got := VolumeBytes(pod, src); got != tt.want {
				t.Errorf("VolumeBytes = %s, want %s", HumanBytes(got), HumanBytes(tt.want))
			}
		})
	}
	// Claims are looked up in the pod's namespace.
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "build", Namespace: "elsewhere"}, Spec: corev1.PodSpec{Volumes: []corev1.Volume{claimVolume("a", "work")}}}
	if got := VolumeBytes(pod, src); got != 0 {
		t.Errorf("a claim of another namespace counted: %d", got)
	}
}
