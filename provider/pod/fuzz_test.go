package pod

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// fuzzInput decodes a golden case's document, JSON, into Translate's
// input; ok is false for a document that does not decode.
func fuzzInput(doc []byte) (Input, *goldenCase, bool) {
	var gc goldenCase
	if err := json.Unmarshal(doc, &gc); err != nil {
		return Input{}, nil, false
	}
	in := gc.input()
	return in, &gc, true
}

// FuzzTranslate runs golden-case documents (testdata/*.pod.yaml as JSON:
// the pod, its Secrets and ConfigMaps, the node's facts) through
// Translate, and every container of a plan through ContainerSpec.
// Properties: no panic; errors are typed (UnsupportedError,
// MissingObjectError, ErrNoServiceAccountToken, ErrNoRuntimeHandler,
// ErrNoHostDNS; a pod
// without a UID the one exception); the input is not modified; the same
// input twice gives equal plans and specs; every podman object carries
// the pod's UID label, and container names are the deterministic,
// distinct ContainerName of the pod UID and the container's name.
//
// Seeds: every golden input, added here so that a new golden case is a
// seed at once, and testdata/fuzz/FuzzTranslate for the cases no golden
// file holds.
func FuzzTranslate(f *testing.F) {
	inputs, err := filepath.Glob(filepath.Join("testdata", "*.pod.yaml"))
	if err != nil || len(inputs) == 0 {
		f.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range inputs {
		raw, err := os.ReadFile(in)
		if err != nil {
			f.Fatal(err)
		}
		doc, err := yaml.YAMLToJSON(raw)
		if err != nil {
			f.Fatalf("%s: %v", in, err)
		}
		f.Add(doc)
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		in, gc, ok := fuzzInput(doc)
		if !ok {
			return
		}
		in2, _, _ := fuzzInput(doc)
		before, _, _ := fuzzInput(doc)
		plan, err := Translate(in)
		if !reflect.DeepEqual(in.Pod, before.Pod) || !reflect.DeepEqual(in.Secrets, before.Secrets) || !reflect.DeepEqual(in.ConfigMaps, before.ConfigMaps) ||
			!reflect.DeepEqual(in.HostDNS, before.HostDNS) {
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
			case errors.As(err, new(*VolumeNotReadyError)):
			case errors.Is(err, ErrNoServiceAccountToken), errors.Is(err, ErrNoRuntimeHandler), errors.Is(err, ErrNoHostDNS):
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
		if plan.TerminationVolume != "" {
			mountpoints[TerminationLogs] = "/vol/" + plan.TerminationVolume
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
