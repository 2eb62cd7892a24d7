package v1alpha1

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseTransfers(t *testing.T) {
	spec := &corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Volumes: []corev1.Volume{
		{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
	}}
	always := spec.DeepCopy()
	always.RestartPolicy = corev1.RestartPolicyAlways
	const head = "apiVersion: rbn.dev/v1alpha1\nkind: Transfers\nsecretName: s3\n"
	for _, tc := range []struct {
		name  string
		value string
		spec  *corev1.PodSpec
		want  []string // substrings of the errors; none: valid
	}{
		{name: "yaml", value: head + "inputs: [{bucket: rec, key: a/b, volume: work, path: r/c.kiwi}]\noutputs: [{volume: work, path: out/, bucket: img, key: x.tar, format: tar}]"},
		{name: "json", value: `{"apiVersion":"rbn.dev/v1alpha1","kind":"Transfers","secretName":"s3","inputs":[{"bucket":"rec","key":"k","volume":"work","unpack":"tar.gz"}]}`},
		{name: "not a document", value: "[", want: []string{"not a Transfers document"}},
		{name: "unknown field", value: head + "inputs: [{bucket: rec, key: k, volume: work, path: p, mode: x}]", want: []string{`unknown field "mode"`}},
		{name: "every problem", spec: always,
			value: "apiVersion: v1\nkind: Other\nsecretName: Bad_Name\ninputs: [{bucket: B, key: '', volume: cfg, path: /abs, unpack: zip}, {bucket: rec, key: k, volume: work}]\n" +
				"outputs: [{volume: nope, path: ../x, bucket: img, key: k}, {volume: work, path: a, bucket: img, key: k, format: rar}]",
			want: []string{"apiVersion", "kind", "secretName", "inputs[0].bucket", "inputs[0].key", "inputs[0].volume", "inputs[0].path", "inputs[0].unpack",
				"inputs[1].path: Required", "outputs: Forbidden", "outputs[0].volume", "outputs[0].path", "outputs[1].format", "outputs[1].key: Duplicate"}},
		{name: "nothing to do", value: head, want: []string{"at least one input or output"}},
		{name: "memory emptyDir", value: head + "outputs: [{volume: shm, path: x, bucket: img, key: k}]", want: []string{"medium: Memory emptyDir cannot be transferred"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			if tc.spec != nil {
				s = tc.spec
			}
			tr, errs := ParseTransfers(tc.value, s)
			if len(tc.want) == 0 {
				if len(errs) > 0 {
					t.Fatal(errs)
				}
				if tr.Inputs[0].Unpack == "" || tr.Inputs[0].Path == "" {
					t.Errorf("not defaulted: %+v", tr.Inputs[0])
				}
				return
			}
			msg := errs.ToAggregate().Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("errors lack %q:\n%s", w, msg)
				}
			}
		})
	}
}
