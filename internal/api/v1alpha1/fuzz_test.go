package v1alpha1

import (
	"encoding/json"
	"path"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// FuzzParseTransfers parses annotation values against a pod with one disk
// emptyDir ("work"), one tmpfs emptyDir ("shm") and a ConfigMap volume.
// Properties: ParseTransfers returns either a value or errors, never both;
// every error is a field.Error under the annotation's path; a value is
// defaulted and valid (the checks below restate the rules independently),
// and it round-trips: encoded as JSON or YAML and parsed again, it is equal.
func FuzzParseTransfers(f *testing.F) {
	f.Fuzz(func(t *testing.T, value string, restartNever bool) {
		spec := &corev1.PodSpec{RestartPolicy: corev1.RestartPolicyAlways, Volumes: []corev1.Volume{
			{Name: "work", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
			{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{}}},
		}}
		if restartNever {
			spec.RestartPolicy = corev1.RestartPolicyNever
		}
		tr, errs := ParseTransfers(value, spec)
		if len(errs) > 0 {
			if tr != nil {
				t.Fatalf("both a value and errors: %+v, %v", tr, errs)
			}
			root := field.NewPath("metadata", "annotations").Key(AnnotationTransfers).String()
			for _, e := range errs {
				if e == nil || !strings.HasPrefix(e.Field, root) || e.Type == "" {
					t.Fatalf("error outside the annotation's path %s: %#v", root, e)
				}
			}
			return
		}
		if tr == nil {
			t.Fatal("no value and no error")
		}
		checkValid(t, tr, restartNever)
		again, errs := ParseTransfers(value, spec)
		if len(errs) > 0 || !reflect.DeepEqual(tr, again) {
			t.Fatalf("parsed twice, differs: %+v, %+v, %v", tr, again, errs)
		}
		js, err := json.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		ym, err := yaml.Marshal(tr)
		if err != nil {
			t.Fatal(err)
		}
		for _, enc := range []string{string(js), string(ym)} {
			back, errs := ParseTransfers(enc, spec)
			if len(errs) > 0 {
				t.Fatalf("%+v encoded as %q does not parse again: %v", tr, enc, errs)
			}
			if !reflect.DeepEqual(tr, back) {
				t.Fatalf("round trip through %q: %+v, want %+v", enc, back, tr)
			}
		}
	})
}

// checkValid restates the rules of a parsed Transfers.
func checkValid(t *testing.T, tr *Transfers, restartNever bool) {
	t.Helper()
	if tr.APIVersion != SchemeGroupVersion.String() || tr.Kind != KindTransfers {
		t.Fatalf("type %s %s", tr.APIVersion, tr.Kind)
	}
	if len(validation.IsDNS1123Subdomain(tr.SecretName)) > 0 {
		t.Fatalf("secretName %q", tr.SecretName)
	}
	if len(tr.Inputs)+len(tr.Outputs) == 0 {
		t.Fatal("nothing to transfer")
	}
	if len(tr.Outputs) > 0 && !restartNever {
		t.Fatal("outputs with restartPolicy Always")
	}
	end := func(what, bucket, key, volume, rel, format string) {
		if len(bucket) < 3 || len(bucket) > 63 || len(validation.IsDNS1123Subdomain(bucket)) > 0 {
			t.Fatalf("%s: bucket %q", what, bucket)
		}
		if key == "" || len(key) > 1024 {
			t.Fatalf("%s: key of %d bytes", what, len(key))
		}
		if volume != "work" {
			t.Fatalf("%s: volume %q is not the pod's disk emptyDir", what, volume)
		}
		// Clean and relative: the runtime joins it under the volume and
		// Reroot takes it as the directory to unpack under.
		if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || slices.Contains(strings.Split(rel, "/"), "..") {
			t.Fatalf("%s: path %q is not clean and inside the volume", what, rel)
		}
		if !slices.Contains(formats, format) {
			t.Fatalf("%s: format %q", what, format)
		}
	}
	for i, in := range tr.Inputs {
		end("input "+string(rune('0'+i%10)), in.Bucket, in.Key, in.Volume, in.Path, in.Unpack)
		if in.Unpack == FormatFile && in.Path == "." {
			t.Fatalf("input %d: a file written to the volume's root", i)
		}
	}
	seen := map[string]bool{}
	for i, out := range tr.Outputs {
		end("output "+string(rune('0'+i%10)), out.Bucket, out.Key, out.Volume, out.Path, out.Format)
		if seen[out.Bucket+"/"+out.Key] {
			t.Fatalf("output %d: duplicate object %s/%s", i, out.Bucket, out.Key)
		}
		seen[out.Bucket+"/"+out.Key] = true
	}
}
