package pod

import (
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/golden"
)

// fieldRoots are the API structs whose every field Fields must decide on,
// each at its JSON path. A struct embedded inline (VolumeSource in Volume,
// EphemeralContainerCommon in EphemeralContainer, LocalObjectReference in
// ConfigMapVolumeSource) contributes its fields to the one embedding it.
// The nested structs listed are those of fields rbn implements: a field
// added to them changes what an implemented field means.
var fieldRoots = []struct {
	path string
	typ  any
}{
	{"spec", corev1.PodSpec{}},
	{"spec.os", corev1.PodOS{}},
	{"spec.securityContext", corev1.PodSecurityContext{}},
	{"spec.containers[]", corev1.Container{}},
	{"spec.containers[].ports[]", corev1.ContainerPort{}},
	{"spec.containers[].envFrom[]", corev1.EnvFromSource{}},
	{"spec.containers[].env[]", corev1.EnvVar{}},
	{"spec.containers[].env[].valueFrom", corev1.EnvVarSource{}},
	{"spec.containers[].resources", corev1.ResourceRequirements{}},
	{"spec.containers[].volumeMounts[]", corev1.VolumeMount{}},
	{"spec.containers[].securityContext", corev1.SecurityContext{}},
	{"spec.containers[].securityContext.capabilities", corev1.Capabilities{}},
	{"spec.ephemeralContainers[]", corev1.EphemeralContainer{}},
	{"spec.volumes[]", corev1.Volume{}},
	{"spec.volumes[].hostPath", corev1.HostPathVolumeSource{}},
	{"spec.volumes[].emptyDir", corev1.EmptyDirVolumeSource{}},
	{"spec.volumes[].persistentVolumeClaim", corev1.PersistentVolumeClaimVolumeSource{}},
	{"spec.volumes[].configMap", corev1.ConfigMapVolumeSource{}},
	{"spec.volumes[].configMap.items[]", corev1.KeyToPath{}},
	{"spec.volumes[].secret", corev1.SecretVolumeSource{}},
	{"spec.volumes[].downwardAPI", corev1.DownwardAPIVolumeSource{}},
	{"spec.volumes[].downwardAPI.items[]", corev1.DownwardAPIVolumeFile{}},
	{"spec.volumes[].projected", corev1.ProjectedVolumeSource{}},
	{"spec.volumes[].projected.sources[]", corev1.VolumeProjection{}},
	{"spec.volumes[].projected.sources[].serviceAccountToken", corev1.ServiceAccountTokenProjection{}},
}

// apiFieldPaths is every field of fieldRoots at its JSON path.
func apiFieldPaths(t *testing.T) []string {
	t.Helper()
	var out []string
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case name == "-" || !f.IsExported():
			case f.Anonymous && name == "":
				walk(prefix, f.Type)
			case name == "":
				t.Fatalf("%s: field %s has no json name", prefix, f.Name)
			default:
				out = append(out, prefix+"."+name)
			}
		}
	}
	for _, r := range fieldRoots {
		walk(r.path, reflect.TypeOf(r.typ))
	}
	return out
}

// TestFieldTable: every field of the pod spec has exactly one decision in
// Fields, and every decision names a field. A Kubernetes upgrade that adds
// a field fails here, naming it, until someone decides what rbn does with it.
func TestFieldTable(t *testing.T) {
	api := apiFieldPaths(t)
	decided := map[string]bool{}
	for _, f := range Fields {
		if decided[f.Path] {
			t.Errorf("%s: decided twice", f.Path)
		}
		decided[f.Path] = true
		switch f.Handling {
		case Implemented, Refused, Ignored, Warned:
		default:
			t.Errorf("%s: handling %q is none of implemented, refused, ignored, warned", f.Path, f.Handling)
		}
		if f.Why == "" {
			t.Errorf("%s: no why", f.Path)
		}
	}
	for _, p := range api {
		if !decided[p] {
			t.Errorf("%s: no decision in Fields (provider/pod/fields.go): refuse it, implement it, or say why it does not matter on a node", p)
		}
	}
	for _, f := range Fields {
		if !slices.Contains(api, f.Path) {
			t.Errorf("%s: in Fields but no such field in the API types walked (fieldRoots)", f.Path)
		}
	}
}

// TestFieldTableRefusals: a row that says Refused names a reason the pod
// gets, so that the table says what a user reads on the pod.
func TestFieldTableRefusals(t *testing.T) {
	for _, f := range Fields {
		if f.Handling == Refused && !strings.Contains(f.Why, "Refused") {
			t.Errorf("%s: refused, but the why does not say with which reason: %q", f.Path, f.Why)
		}
	}
}

// TestPodSpecDoc keeps docs/podspec.md in step with Fields; -update
// rewrites it.
func TestPodSpecDoc(t *testing.T) {
	golden.Check(t, filepath.Join("..", "..", "docs", "podspec.md"), []byte(renderFieldsDoc()), *update)
}

// renderFieldsDoc renders Fields as docs/podspec.md.
func renderFieldsDoc() string {
	var b strings.Builder
	count := map[Handling]int{}
	for _, f := range Fields {
		count[f.Handling]++
	}
	b.WriteString(`# Pod specs on remote build nodes

What rbn does with every field of a pod spec, next to what a kubelet would do. A pod that sets
a field rbn cannot honour fails at once, before anything is created on the host: its phase is
` + "`Failed`" + ` with the reason the row gives (` + "`UnsupportedField`, `UnsupportedVolume`, `InvalidSpec`, ..." + `),
its message names the field, and a Warning event says the same.

- **implemented**: done as the kubelet does it; values rbn cannot do are refused, as the row says.
- **refused**: the pod fails with the reason given.
- **ignored**: not a node's business (the scheduler's, the API server's, cluster DNS's); the row
  says why.
- **warned**: the pod runs without it, and a Warning event (reason given) says so.

Changes to a running pod that the API allows and rbn does not apply (a container's image, an
in-place resize, ephemeral containers) get a ` + "`SpecChangeIgnored`" + ` Warning event.

The fields of ` + "`spec.containers[]`" + ` hold for ` + "`spec.initContainers[]`" + ` too. The table is
` + "`provider/pod/fields.go`" + `; this page is rendered from it (` + "`go test ./provider/pod -run TestPodSpecDoc -update`" + `),
and a unit test fails when a Kubernetes upgrade adds a field that has no row.

`)
	fmt.Fprintf(&b, "%d fields: %d implemented, %d refused, %d ignored, %d warned.\n\n",
		len(Fields), count[Implemented], count[Refused], count[Ignored], count[Warned])
	b.WriteString("| Field | rbn | Why |\n|---|---|---|\n")
	for _, f := range Fields {
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.Path, f.Handling, strings.ReplaceAll(f.Why, "|", `\|`))
	}
	return b.String()
}
