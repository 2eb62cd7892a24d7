package node

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/golden"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml from Build's output")

// buildCase is one testdata/<case>.in.yaml. Facts and podman.HostInfo have
// no JSON tags: encoding/json matches their field names case-insensitively,
// so the YAML uses camelCase keys (memTotal, kubeletPort).
type buildCase struct {
	Name  string                    `json:"name"`
	Spec  rbnv1.RemoteBuildNodeSpec `json:"spec"`
	Facts Facts                     `json:"facts"`
}

// wantCases are the cases that must exist: deleting an input file must not
// silently drop what it covered.
var wantCases = []string{
	"ready-amd64-defaults",
	"arm64-with-reserve-labels-taints",
	"never-reached",
	"memory-pressure",
	"disk-pressure",
	"disk-pressure-threshold",
	"empty-taints-list",
	"no-storage-figures",
	"page-cache-is-available",
}

func TestBuild(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		have[name] = true
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			var tc buildCase
			if err := yaml.UnmarshalStrict(data, &tc); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			spec := rbnv1.Default(&tc.Spec)
			// Build's contract is a defaulted, valid spec: an input that breaks
			// it tests nothing real.
			if errs := rbnv1.Validate(tc.Name, spec); len(errs) > 0 {
				t.Fatalf("%s: invalid spec: %v", in, errs.ToAggregate())
			}

			n := Build(tc.Name, spec, tc.Facts)
			checkInvariants(t, n)
			got, err := yaml.Marshal(n)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", name+".golden.yaml"), got, *update)
		})
	}
	for _, name := range wantCases {
		if !have[name] {
			t.Errorf("testdata/%s.in.yaml is missing", name)
		}
	}
	goldens, err := filepath.Glob(filepath.Join("testdata", "*.golden.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range goldens {
		if name := strings.TrimSuffix(filepath.Base(g), ".golden.yaml"); !have[name] {
			t.Errorf("%s has no input testdata/%s.in.yaml", g, name)
		}
	}
}

// checkInvariants holds for every node, whatever the goldens say.
func checkInvariants(t *testing.T, n *corev1.Node) {
	t.Helper()
	for name, c := range n.Status.Capacity {
		a, ok := n.Status.Allocatable[name]
		if !ok {
			t.Errorf("capacity %s has no allocatable", name)
			continue
		}
		if a.Sign() < 0 || a.Cmp(c) > 0 {
			t.Errorf("allocatable %s = %s, want between 0 and capacity %s", name, a.String(), c.String())
		}
	}
	for name := range n.Status.Allocatable {
		if _, ok := n.Status.Capacity[name]; !ok {
			t.Errorf("allocatable %s has no capacity", name)
		}
	}
	seen := map[corev1.NodeConditionType]bool{}
	for _, c := range n.Status.Conditions {
		if seen[c.Type] {
			t.Errorf("condition %s appears twice", c.Type)
		}
		seen[c.Type] = true
		if c.Reason == "" {
			t.Errorf("condition %s has no reason", c.Type)
		}
	}
	for _, ct := range []corev1.NodeConditionType{corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure} {
		if !seen[ct] {
			t.Errorf("condition %s is missing", ct)
		}
	}
	if n.Labels[rbnv1.LabelRemoteBuildNode] != "true" {
		t.Errorf("label %s = %q, want true", rbnv1.LabelRemoteBuildNode, n.Labels[rbnv1.LabelRemoteBuildNode])
	}
}
