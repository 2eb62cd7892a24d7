package pod

import (
	"errors"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RenderFiles renders each files volume alone: a Secret deleted since the
// pod started fails its volume only, and other kinds are left out.
func TestRenderFiles(t *testing.T) {
	pd := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid", Labels: map[string]string{"app": "a"}},
		Spec: corev1.PodSpec{Volumes: []corev1.Volume{
			{Name: "gone", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "deleted"}}},
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
			{Name: "labels", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}}}}}},
			{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		}},
	}
	files, errs := RenderFiles(Input{Pod: pd, ConfigMaps: map[string]*corev1.ConfigMap{
		"app": {ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns"}, Data: map[string]string{"key": "v2"}},
	}})
	var missing *MissingObjectError
	if len(errs) != 1 || !errors.As(errs["gone"], &missing) {
		t.Errorf("errs = %v, want the deleted Secret's volume only", errs)
	}
	if f := files["config"]; len(f) != 1 || f[0].Path != "key" || string(f[0].Data) != "v2" {
		t.Errorf("config volume: %+v", f)
	}
	if f := files["labels"]; len(f) != 1 || string(f[0].Data) != `app="a"` {
		t.Errorf("labels volume: %+v", f)
	}
	if _, ok := files["scratch"]; ok || len(files) != 2 {
		t.Errorf("files for %d volumes, want config and labels: %v", len(files), files)
	}
}
