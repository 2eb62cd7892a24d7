package pod

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus testdata/fuzz/FuzzTranslate from testdata/*.pod.yaml")

// fuzzInput decodes a golden case's document, JSON, into Translate's
// input; ok is false for a document that does not decode.
func fuzzInput(doc []byte) (Input, *goldenCase, bool) {
	var gc goldenCase
	if err := json.Unmarshal(doc, &gc); err != nil {
		return Input{}, nil, false
	}
	in := Input{
		Pod: &gc.Pod, NodeName: gc.NodeName, PodIP: gc.PodIP, HostIP: gc.HostIP,
		NodeAllocatable: gc.NodeAllocatable, ServiceEnv: gc.ServiceEnv, HostPathAllowlist: gc.HostPathAllowlist,
		ServiceAccountToken: gc.ServiceAccountToken,
		Secrets:             map[string]*corev1.Secret{}, ConfigMaps: map[string]*corev1.ConfigMap{},
	}
	for i := range gc.Secrets {
		in.Secrets[gc.Secrets[i].Name] = &gc.Secrets[i]
	}
	for i := range gc.ConfigMaps {
		in.ConfigMaps[gc.ConfigMaps[i].Name] = &gc.ConfigMaps[i]
	}
	return in, &gc, true
}

// FuzzTranslate runs golden-case documents (testdata/*.pod.yaml as JSON:
// the pod, its Secrets and ConfigMaps, the node's facts) through
// Translate, and every container of a plan through ContainerSpec.
// Properties: no panic; errors are typed (UnsupportedError,
// MissingObjectError, ErrNoServiceAccountToken; a pod without a UID the one
// exception); the input is not modified; the same input twice gives equal
// plans and specs; every podman object carries the pod's UID label, and
// container names are the deterministic, distinct ContainerName of the pod
// UID and the container's name.
func FuzzTranslate(f *testing.F) {
	f.Fuzz(func(t *testing.T, doc []byte) {
		in, gc, ok := fuzzInput(doc)
		if !ok {
			return
		}
		in2, _, _ := fuzzInput(doc)
		before, _, _ := fuzzInput(doc)
		plan, err := Translate(in)
		if !reflect.DeepEqual(in.Pod, before.Pod) || !reflect.DeepEqual(in.Secrets, before.Secrets) || !reflect.DeepEqual(in.ConfigMaps, before.ConfigMaps) {
			t.Fatal("Translate modified its input")
		}
		plan2, err2 := Translate(in2)
		if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(plan, plan2) {
			t.Fatalf("the same input twice: %v / %v, plans equal: %v", err, err2, reflect.DeepEqual(plan, plan2))
		}
		if err != nil {
			var (
				ue *UnsupportedError
				me *MissingObjectError
			)
			switch {
			case errors.As(err, &ue):
				if ue.Reason == "" || ue.Field == "" {
					t.Fatalf("UnsupportedError without reason or field: %#v", ue)
				}
			case errors.As(err, &me):
				if me.Reason != ReasonCreateContainerConfigError || me.Name == "" && me.Key == "" {
					t.Fatalf("MissingObjectError %#v", me)
				}
			case errors.Is(err, ErrNoServiceAccountToken):
			case gc.Pod.UID == "" && strings.Contains(err.Error(), "no UID"):
			default:
				t.Fatalf("untyped error %T: %v", err, err)
			}
			return
		}
		uid := string(gc.Pod.UID)
		if plan.Labels[LabelPodUID] != uid || plan.PodName != PodName(gc.Pod.UID) {
			t.Fatalf("plan of pod %s: name %s, labels %v", uid, plan.PodName, plan.Labels)
		}
		if ps := PodSpec(plan); ps.Labels[LabelPodUID] != uid {
			t.Fatalf("pod spec labels %v", ps.Labels)
		}
		mountpoints := map[string]string{}
		for _, v := range plan.Volumes {
			if v.Kind == VolumeEmptyDir || v.Kind == VolumeFiles {
				mountpoints[v.K8sName] = "/vol/" + v.K8sName
			}
		}
		names := map[string]string{}
		for _, c := range append(append([]Container{}, plan.InitContainers...), plan.Containers...) {
			s, err := ContainerSpec(c, plan, 0, "POD", mountpoints)
			if err != nil {
				t.Fatalf("ContainerSpec(%s) of a translated plan: %v", c.K8sName, err)
			}
			again, _ := ContainerSpec(c, plan2, 0, "POD", mountpoints)
			if !reflect.DeepEqual(s, again) {
				t.Fatalf("ContainerSpec(%s) differs for equal plans", c.K8sName)
			}
			if s.Labels[LabelPodUID] != uid || s.Labels[LabelContainer] != c.K8sName {
				t.Fatalf("container %s: labels %v", c.K8sName, s.Labels)
			}
			if want := ContainerName(types.UID(uid), c.K8sName, 0); s.Name != want {
				t.Fatalf("container %s named %s, want %s", c.K8sName, s.Name, want)
			}
			if other, dup := names[s.Name]; dup {
				t.Fatalf("containers %s and %s share the podman name %s", other, c.K8sName, s.Name)
			}
			names[s.Name] = c.K8sName
		}
	})
}

// TestFuzzSeeds keeps FuzzTranslate's seed corpus in step with the golden
// inputs: one seed per testdata/*.pod.yaml, rewritten with -update-seeds.
func TestFuzzSeeds(t *testing.T) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.pod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzTranslate")
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := yaml.YAMLToJSON(raw)
		if err != nil {
			t.Fatal(err)
		}
		want := "go test fuzz v1\n[]byte(" + strconv.Quote(string(doc)) + ")\n"
		file := filepath.Join(dir, strings.TrimSuffix(filepath.Base(in), ".pod.yaml"))
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(file); err != nil || string(got) != want {
			t.Errorf("seed %s is missing or stale: run go test ./provider/pod -run TestFuzzSeeds -update-seeds", file)
		}
	}
}
