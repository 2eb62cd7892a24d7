package pod

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/containers/podman/v5/pkg/specgen"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/remote-build-nodes/rbn/internal/golden"
)

var update = flag.Bool("update", false, "rewrite the golden files of provider/pod/testdata")

// goldenCase is the input document of one golden case, testdata/<case>.pod.yaml.
type goldenCase struct {
	NodeName            string              `json:"nodeName"`
	PodIP               string              `json:"podIP,omitempty"`
	HostIP              string              `json:"hostIP,omitempty"`
	ClusterDomain       string              `json:"clusterDomain,omitempty"`
	NodeAllocatable     corev1.ResourceList `json:"nodeAllocatable,omitempty"`
	ServiceEnv          map[string]string   `json:"serviceEnv,omitempty"`
	HostPathAllowlist   []string            `json:"hostPathAllowlist,omitempty"`
	ServiceAccountToken string              `json:"serviceAccountToken,omitempty"`
	Secrets             []corev1.Secret     `json:"secrets,omitempty"`
	ConfigMaps          []corev1.ConfigMap  `json:"configMaps,omitempty"`
	// Services are the cluster Services the pod may name in its
	// rbn.dev/cluster-services annotation.
	Services []corev1.Service `json:"services,omitempty"`
	// RuntimeHandler is the handler of the pod's RuntimeClass, which the
	// caller resolves; HostRuntimes the host podman's OCI runtimes.
	RuntimeHandler       string   `json:"runtimeHandler,omitempty"`
	HostRuntimes         []string `json:"hostRuntimes,omitempty"`
	AllowedUnsafeSysctls []string `json:"allowedUnsafeSysctls,omitempty"`
	RootlessHost         bool     `json:"rootlessHost,omitempty"`
	ContainerLogMaxBytes int64    `json:"containerLogMaxBytes,omitempty"`
	// HostResolvConf is the build host's resolv.conf, as text.
	HostResolvConf *string `json:"hostResolvConf,omitempty"`
	Network        string  `json:"network,omitempty"`
	// Claims are the pod's PersistentVolumeClaims, each with its volume;
	// VolumeRoot the node's spec.volumes.root.
	Claims     []goldenClaim `json:"claims,omitempty"`
	VolumeRoot string        `json:"volumeRoot,omitempty"`
	Pod        corev1.Pod    `json:"pod"`
}

type goldenClaim struct {
	PVC corev1.PersistentVolumeClaim `json:"pvc"`
	PV  *corev1.PersistentVolume     `json:"pv,omitempty"`
}

// input is the case as Translate's input (FuzzTranslate's too).
func (gc *goldenCase) input() Input {
	in := Input{
		Pod:                  &gc.Pod,
		NodeName:             gc.NodeName,
		PodIP:                gc.PodIP,
		HostIP:               gc.HostIP,
		ClusterDomain:        gc.ClusterDomain,
		NodeAllocatable:      gc.NodeAllocatable,
		ServiceEnv:           gc.ServiceEnv,
		HostPathAllowlist:    gc.HostPathAllowlist,
		ServiceAccountToken:  gc.ServiceAccountToken,
		RuntimeHandler:       gc.RuntimeHandler,
		HostRuntimes:         gc.HostRuntimes,
		AllowedUnsafeSysctls: gc.AllowedUnsafeSysctls,
		RootlessHost:         gc.RootlessHost,
		ContainerLogMaxBytes: gc.ContainerLogMaxBytes,
		Network:              gc.Network,
		Secrets:              map[string]*corev1.Secret{},
		ConfigMaps:           map[string]*corev1.ConfigMap{},
		Claims:               map[string]*Claim{},
		Services:             map[types.NamespacedName]*corev1.Service{},
		VolumeRoot:           gc.VolumeRoot,
	}
	for i := range gc.Services {
		in.Services[types.NamespacedName{Namespace: gc.Services[i].Namespace, Name: gc.Services[i].Name}] = &gc.Services[i]
	}
	for i := range gc.Claims {
		in.Claims[gc.Claims[i].PVC.Name] = &Claim{PVC: &gc.Claims[i].PVC, PV: gc.Claims[i].PV}
	}
	if gc.HostResolvConf != nil {
		rc := ParseResolvConf([]byte(*gc.HostResolvConf))
		in.HostDNS = &rc
	}
	for i := range gc.Secrets {
		in.Secrets[gc.Secrets[i].Name] = &gc.Secrets[i]
	}
	for i := range gc.ConfigMaps {
		in.ConfigMaps[gc.ConfigMaps[i].Name] = &gc.ConfigMaps[i]
	}
	return in
}

// goldenOutput is what a translated case renders to, testdata/<case>.golden.yaml.
type goldenOutput struct {
	// Plan with file contents shown as text where they are text.
	Plan    any                       `json:"plan"`
	PodSpec *specgen.PodSpecGenerator `json:"podSpec"`
	// ContainerSpecs in run order (init containers first), attempt 0.
	ContainerSpecs []namedSpec `json:"containerSpecs"`
	// Forwarder is the container of rbn-forward, for a pod that names
	// cluster Services.
	Forwarder *specgen.SpecGenerator `json:"forwarder,omitempty"`
}

type namedSpec struct {
	Container string                 `json:"container"`
	Spec      *specgen.SpecGenerator `json:"spec"`
}

// TestTranslateGolden runs every testdata/<case>.pod.yaml through Translate
// and, when it succeeds, ContainerSpec and PodSpec, and compares the result
// with testdata/<case>.golden.yaml, or the error with
// testdata/<case>.error.golden. Run with -update to rewrite them, then read
// the diff: the golden files are the specification.
func TestTranslateGolden(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) == 0 {
		t.Fatal("no testdata/*.pod.yaml")
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".pod.yaml")
		t.Run(name, func(t *testing.T) {
			okPath := filepath.Join("testdata", name+".golden.yaml")
			errPath := filepath.Join("testdata", name+".error.golden")
			got, isErr := renderCase(t, in)
			want, stale := okPath, errPath
			if isErr {
				want, stale = errPath, okPath
			}
			if *update {
				if err := os.WriteFile(want, got, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.Remove(stale); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
				return
			}
			if _, err := os.Stat(stale); err == nil {
				t.Errorf("%s exists but the case renders %s", stale, want)
			}
			golden.Check(t, want, got, false)
		})
	}
}

// renderCase translates one input file; it returns the golden bytes and
// whether they are an error's.
func renderCase(t *testing.T, inputPath string) ([]byte, bool) {
	t.Helper()
	raw, err := os.ReadFile(inputPath)
	if err != nil {
		t.Fatal(err)
	}
	var gc goldenCase
	if err := yaml.UnmarshalStrict(raw, &gc); err != nil {
		t.Fatalf("decode %s: %v", inputPath, err)
	}
	in := gc.input()

	plan, err := Translate(in)
	if err != nil {
		return []byte(describeError(err)), true
	}

	mountpoints := map[string]string{}
	for _, v := range plan.Volumes {
		if v.Kind == VolumeEmptyDir || v.Kind == VolumeFiles {
			mountpoints[v.K8sName] = "/vol/" + v.K8sName
		}
	}
	if plan.TerminationVolume != "" {
		mountpoints[TerminationLogs] = "/vol/" + plan.TerminationVolume
	}
	out := goldenOutput{Plan: readablePlan(t, plan), PodSpec: PodSpec(plan)}
	for _, c := range append(append([]Container{}, plan.InitContainers...), plan.Containers...) {
		s, err := ContainerSpec(c, plan, 0, "POD", mountpoints)
		if err != nil {
			t.Fatalf("ContainerSpec(%s): %v", c.K8sName, err)
		}
		out.ContainerSpecs = append(out.ContainerSpecs, namedSpec{Container: c.K8sName, Spec: s})
	}
	if len(plan.ClusterServices) > 0 {
		out.Forwarder = ForwarderSpec(plan, gc.Pod.UID, "INFRA-IMAGE", "/run/rbn/services/"+string(gc.Pod.UID))
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b, false
}

// describeError pins the error's type and reason as well as its text.
func describeError(err error) string {
	var (
		ue *UnsupportedError
		me *MissingObjectError
	)
	switch {
	case errors.As(err, &ue):
		return fmt.Sprintf("UnsupportedError\nreason: %s\nfield: %s\n%s\n", ue.Reason, ue.Field, err)
	case errors.As(err, &me):
		return fmt.Sprintf("MissingObjectError\nreason: %s\nkind: %s\nname: %s/%s\nkey: %q\n%s\n", me.Reason, me.Kind, me.Namespace, me.Name, me.Key, err)
	}
	return fmt.Sprintf("%T\n%s\n", err, err)
}

// readablePlan is the plan as generic YAML with each file's Data shown as
// Text when it is text, and Mode in octal, so that goldens read by eye.
func readablePlan(t *testing.T, p *Plan) any {
	t.Helper()
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	vols, _ := m["Volumes"].([]any)
	for _, v := range vols {
		files, _ := v.(map[string]any)["Files"].([]any)
		for _, f := range files {
			file := f.(map[string]any)
			if mode, ok := file["Mode"].(float64); ok {
				file["Mode"] = fmt.Sprintf("%#o", int(mode))
			}
			enc, _ := file["Data"].(string)
			data, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				t.Fatal(err)
			}
			if utf8.Valid(data) {
				delete(file, "Data")
				file["Text"] = string(data)
			}
		}
	}
	return m
}

func TestSignalNumber(t *testing.T) {
	for name, want := range map[string]int{
		"SIGTERM": 15, "SIGKILL": 9, "SIGUSR1": 10, "SIGWINCH": 28,
		"SIGRTMIN": 34, "SIGRTMIN+3": 37, "SIGRTMAX-1": 63, "SIGRTMAX": 64,
		"SIGRTMIN+31": 0, "SIGRTMAX-31": 0, "SIGRTMIN+x": 0, "TERM": 0, "": 0,
	} {
		got, err := SignalNumber(name)
		if want == 0 && err == nil || want != 0 && (err != nil || int(got) != want) {
			t.Errorf("SignalNumber(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
}
