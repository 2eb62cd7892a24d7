package provider

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/remote-build-nodes/rbn/internal/golden"
	"github.com/remote-build-nodes/rbn/internal/podman"
)

var update = flag.Bool("update", false, "rewrite the golden files of provider/testdata (status, metrics)")

// statusCase is the input document of one golden case,
// testdata/status/<case>.yaml: what podStatus is computed from.
type statusCase struct {
	Pod          corev1.Pod `json:"pod"`
	Now          time.Time  `json:"now"`
	HostIP       string     `json:"hostIP,omitempty"`
	PodIP        string     `json:"podIP,omitempty"`
	SandboxReady bool       `json:"sandboxReady,omitempty"`
	// Containers is what the host runs, by Kubernetes container name.
	Containers map[string]struct {
		Attempt  int                    `json:"attempt"`
		Current  *podman.ContainerState `json:"current"`
		Previous *podman.ContainerState `json:"previous,omitempty"`
	} `json:"containers,omitempty"`
	Waiting map[string]reason    `json:"waiting,omitempty"`
	BackOff map[string]time.Time `json:"backOff,omitempty"`
	Outputs *struct {
		Done    bool    `json:"done,omitempty"`
		Failure *reason `json:"failure,omitempty"`
	} `json:"outputs,omitempty"`
}

// statusGolden is what a case renders to, testdata/status/<case>.golden.yaml.
type statusGolden struct {
	Status          corev1.PodStatus `json:"status"`
	AwaitingOutputs bool             `json:"awaitingOutputs,omitempty"`
}

// TestPodStatusGolden computes the status of every testdata/status/<case>.yaml
// and compares it with testdata/status/<case>.golden.yaml. Run with -update
// to rewrite them, then read the diff: the golden files are the specification.
func TestPodStatusGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "status", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, input := range inputs {
		if strings.HasSuffix(input, ".golden.yaml") {
			continue
		}
		n++
		name := strings.TrimSuffix(filepath.Base(input), ".yaml")
		t.Run(name, func(t *testing.T) {
			got := renderStatus(t, input)
			golden.Check(t, filepath.Join("testdata", "status", name+".golden.yaml"), got, *update)
		})
	}
	if n == 0 {
		t.Fatal("no testdata/status/*.yaml")
	}
}

func renderStatus(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sc statusCase
	if err := yaml.UnmarshalStrict(raw, &sc); err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	in := statusInput{
		Pod: &sc.Pod, Observed: map[string]*observed{}, Waiting: sc.Waiting, BackOff: sc.BackOff,
		Now: sc.Now, HostIP: sc.HostIP, PodIP: sc.PodIP, SandboxReady: sc.SandboxReady,
	}
	for name, c := range sc.Containers {
		in.Observed[name] = &observed{name: name, attempt: c.Attempt, current: c.Current, previous: c.Previous}
	}
	if sc.Outputs != nil {
		in.Outputs = outputsState{Planned: true, Done: sc.Outputs.Done, Failure: sc.Outputs.Failure}
	}
	st, awaiting := podStatus(in)
	out, err := yaml.Marshal(statusGolden{Status: st, AwaitingOutputs: awaiting})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
