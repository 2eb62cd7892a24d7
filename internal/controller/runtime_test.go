package controller

import (
	"context"
	"reflect"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/provider/node"
)

var nodesResource = schema.GroupResource{Resource: "nodes"}

// verbs lists the verb and resource of every call made through client.
func verbs(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource)
	}
	return out
}

func TestSyncNodeSpec(t *testing.T) {
	gpu := corev1.Taint{Key: "example.com/gpu", Value: "yes", Effect: corev1.TaintEffectNoExecute}
	unreachable := corev1.Taint{Key: "node.kubernetes.io/unreachable", Effect: corev1.TaintEffectNoExecute}
	notReady := corev1.Taint{Key: "node.kubernetes.io/not-ready", Effect: corev1.TaintEffectNoSchedule}
	stale := corev1.Taint{Key: "example.com/stale", Value: "1", Effect: corev1.TaintEffectNoSchedule}
	operators := corev1.Taint{Key: "maintenance", Value: "disk", Effect: corev1.TaintEffectNoSchedule}
	specLabels := map[string]string{rbnv1.LabelRemoteBuildNode: "true", "team": "a"}
	specTaints := []corev1.Taint{rbnv1.DefaultTaint, gpu}
	managed := func(taints ...corev1.Taint) map[string]string {
		return map[string]string{rbnv1.AnnotationManagedTaints: node.ManagedTaints(taints)}
	}
	mkNode := func(annotations, labels map[string]string, taints ...corev1.Taint) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: labels, Annotations: annotations}, Spec: corev1.NodeSpec{Taints: taints}}
	}

	tests := []struct {
		name       string
		specTaints []corev1.Taint // the Node the spec asks for has specLabels and these
		existing   *corev1.Node   // nil: no Node yet
		wantVerbs  []string
		wantLabels map[string]string
		wantTaints []corev1.Taint
	}{{
		name:       "node missing: left to virtual-kubelet to create",
		specTaints: specTaints,
		wantVerbs:  []string{"get nodes"},
	}, {
		name:       "taints an earlier spec set replaced, others' taints and labels kept",
		specTaints: specTaints,
		existing: mkNode(managed(stale, rbnv1.DefaultTaint), map[string]string{"kubernetes.io/hostname": "n1", "team": "b"},
			stale, unreachable, rbnv1.DefaultTaint, operators, notReady),
		wantVerbs: []string{"get nodes", "update nodes"},
		// Labels the spec does not name (set by others) stay.
		wantLabels: map[string]string{"kubernetes.io/hostname": "n1", "team": "a", rbnv1.LabelRemoteBuildNode: "true"},
		wantTaints: []corev1.Taint{rbnv1.DefaultTaint, gpu, unreachable, operators, notReady},
	}, {
		name:       "no record of the earlier spec's taints: none removed",
		specTaints: specTaints,
		existing:   mkNode(nil, specLabels, stale, rbnv1.DefaultTaint),
		wantVerbs:  []string{"get nodes", "update nodes"},
		wantLabels: specLabels,
		wantTaints: []corev1.Taint{rbnv1.DefaultTaint, gpu, stale},
	}, {
		name:       "unreadable record: none removed",
		specTaints: specTaints,
		existing:   mkNode(map[string]string{rbnv1.AnnotationManagedTaints: "stale:NoSchedule"}, specLabels, stale),
		wantVerbs:  []string{"get nodes", "update nodes"},
		wantLabels: specLabels,
		wantTaints: []corev1.Taint{rbnv1.DefaultTaint, gpu, stale},
	}, {
		name:       "node without labels",
		specTaints: specTaints,
		existing:   mkNode(nil, nil),
		wantVerbs:  []string{"get nodes", "update nodes"},
		wantLabels: specLabels,
		wantTaints: specTaints,
	}, {
		name:       "taint value changed",
		specTaints: specTaints,
		existing: mkNode(managed(specTaints...), specLabels,
			corev1.Taint{Key: rbnv1.TaintRemoteBuildNode, Value: "false", Effect: corev1.TaintEffectNoSchedule}, gpu),
		wantVerbs:  []string{"get nodes", "update nodes"},
		wantLabels: specLabels,
		wantTaints: specTaints,
	}, {
		name:       "spec now has no taints",
		existing:   mkNode(managed(specTaints...), specLabels, rbnv1.DefaultTaint, gpu, unreachable, operators),
		wantVerbs:  []string{"get nodes", "update nodes"},
		wantLabels: specLabels,
		wantTaints: []corev1.Taint{unreachable, operators},
	}, {
		name:       "already in line: no update",
		specTaints: specTaints,
		existing: mkNode(managed(specTaints...), map[string]string{"kubernetes.io/hostname": "n1", rbnv1.LabelRemoteBuildNode: "true", "team": "a"},
			rbnv1.DefaultTaint, gpu, unreachable),
		wantVerbs:  []string{"get nodes"},
		wantLabels: map[string]string{"kubernetes.io/hostname": "n1", rbnv1.LabelRemoteBuildNode: "true", "team": "a"},
		wantTaints: []corev1.Taint{rbnv1.DefaultTaint, gpu, unreachable},
	}, {
		name:       "in line but not recorded: the record is written",
		specTaints: specTaints,
		existing:   mkNode(nil, specLabels, rbnv1.DefaultTaint, gpu),
		wantVerbs:  []string{"get nodes", "update nodes"},
		wantLabels: specLabels,
		wantTaints: specTaints,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := &corev1.Node{
				ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: specLabels},
				Spec:       corev1.NodeSpec{Taints: tt.specTaints},
			}
			var objs []runtime.Object
			if tt.existing != nil {
				objs = append(objs, tt.existing)
			}
			client := fake.NewClientset(objs...)
			if err := syncNodeSpec(context.Background(), client, w); err != nil {
				t.Fatalf("syncNodeSpec: %v", err)
			}
			if got := verbs(client); !reflect.DeepEqual(got, tt.wantVerbs) {
				t.Errorf("calls = %q, want %q", got, tt.wantVerbs)
			}
			nodes, err := client.CoreV1().Nodes().List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if tt.existing == nil {
				if len(nodes.Items) != 0 {
					t.Errorf("a Node was created: %+v", nodes.Items)
				}
				return
			}
			got := nodes.Items[0]
			if !reflect.DeepEqual(got.Labels, tt.wantLabels) {
				t.Errorf("labels = %v, want %v", got.Labels, tt.wantLabels)
			}
			if !reflect.DeepEqual(got.Spec.Taints, tt.wantTaints) {
				t.Errorf("taints = %+v, want %+v", got.Spec.Taints, tt.wantTaints)
			}
			if m := got.Annotations[rbnv1.AnnotationManagedTaints]; m != node.ManagedTaints(tt.specTaints) {
				t.Errorf("managed taints recorded %s, want %s", m, node.ManagedTaints(tt.specTaints))
			}
		})
	}
}

func TestSyncNodeSpecRetriesConflict(t *testing.T) {
	client := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	conflicts := 0
	client.PrependReactor("update", "nodes", func(clienttesting.Action) (bool, runtime.Object, error) {
		if conflicts > 0 {
			return false, nil, nil // the tracker performs it
		}
		conflicts++
		return true, nil, apierrors.NewConflict(nodesResource, "n1", nil)
	})
	want := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"team": "a"}},
		Spec:       corev1.NodeSpec{Taints: []corev1.Taint{rbnv1.DefaultTaint}},
	}
	if err := syncNodeSpec(context.Background(), client, want); err != nil {
		t.Fatalf("syncNodeSpec: %v", err)
	}
	// The retry reads the Node again before writing it.
	wantVerbs := []string{"get nodes", "update nodes", "get nodes", "update nodes"}
	if got := verbs(client); !reflect.DeepEqual(got, wantVerbs) {
		t.Errorf("calls = %q, want %q", got, wantVerbs)
	}
	n, err := client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Labels["team"] != "a" || !reflect.DeepEqual(n.Spec.Taints, want.Spec.Taints) {
		t.Errorf("node after retry: labels %v taints %+v", n.Labels, n.Spec.Taints)
	}
}

func TestSyncNodeSpecGetError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("get", "nodes", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(nodesResource, "n1", nil)
	})
	err := syncNodeSpec(context.Background(), client, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("err = %v, want the Forbidden of get", err)
	}
}

func TestEqualTaints(t *testing.T) {
	a := corev1.Taint{Key: "a", Value: "1", Effect: corev1.TaintEffectNoSchedule}
	b := corev1.Taint{Key: "b", Effect: corev1.TaintEffectNoExecute}
	with := func(t corev1.Taint, f func(*corev1.Taint)) corev1.Taint { f(&t); return t }
	tests := []struct {
		name string
		x, y []corev1.Taint
		want bool
	}{
		{"nil and empty", nil, []corev1.Taint{}, true},
		{"same", []corev1.Taint{a, b}, []corev1.Taint{a, b}, true},
		{"order matters", []corev1.Taint{a, b}, []corev1.Taint{b, a}, false},
		{"one more", []corev1.Taint{a}, []corev1.Taint{a, b}, false},
		{"value differs", []corev1.Taint{a}, []corev1.Taint{with(a, func(t *corev1.Taint) { t.Value = "2" })}, false},
		{"effect differs", []corev1.Taint{a}, []corev1.Taint{with(a, func(t *corev1.Taint) { t.Effect = corev1.TaintEffectNoExecute })}, false},
		{"key differs", []corev1.Taint{a}, []corev1.Taint{with(a, func(t *corev1.Taint) { t.Key = "c" })}, false},
		// The node lifecycle controller stamps NoExecute taints; that is no change.
		{"timeAdded ignored", []corev1.Taint{b}, []corev1.Taint{with(b, func(t *corev1.Taint) { t.TimeAdded = &metav1.Time{Time: time.Unix(1, 0)} })}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := equalTaints(tt.x, tt.y); got != tt.want {
				t.Errorf("equalTaints = %v, want %v", got, tt.want)
			}
			if got := equalTaints(tt.y, tt.x); got != tt.want {
				t.Errorf("equalTaints reversed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestEqualLabels(t *testing.T) {
	tests := []struct {
		name string
		x, y map[string]string
		want bool
	}{
		{"nil and empty", nil, map[string]string{}, true},
		{"same", map[string]string{"a": "1", "b": "2"}, map[string]string{"b": "2", "a": "1"}, true},
		{"value differs", map[string]string{"a": "1"}, map[string]string{"a": "2"}, false},
		{"empty value is a value", map[string]string{"a": ""}, map[string]string{"b": ""}, false},
		{"one more", map[string]string{"a": "1"}, map[string]string{"a": "1", "b": "2"}, false},
		{"other key, same size", map[string]string{"a": "1"}, map[string]string{"b": "1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := equalLabels(tt.x, tt.y); got != tt.want {
				t.Errorf("equalLabels = %v, want %v", got, tt.want)
			}
			if got := equalLabels(tt.y, tt.x); got != tt.want {
				t.Errorf("equalLabels reversed = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTokenFunc(t *testing.T) {
	tests := []struct {
		name   string
		sa     string // the pod's serviceAccountName
		wantSA string
	}{
		{"named service account", "builder", "builder"},
		{"no service account named", "", "default"},
	}
	expires := time.Date(2026, 1, 1, 13, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: types.UID("uid-1")},
				Spec:       corev1.PodSpec{ServiceAccountName: tt.sa},
			}
			client := fake.NewClientset()
			var got clienttesting.CreateActionImpl
			calls := 0
			client.PrependReactor("create", "serviceaccounts", func(a clienttesting.Action) (bool, runtime.Object, error) {
				calls++
				got = a.(clienttesting.CreateActionImpl)
				return true, &authenticationv1.TokenRequest{Status: authenticationv1.TokenRequestStatus{Token: "tok-" + got.Name, ExpirationTimestamp: metav1.NewTime(expires)}}, nil
			})
			token, exp, err := tokenFunc(client)(context.Background(), pod, []string{"api", "vault"}, 3600)
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			if calls != 1 {
				t.Fatalf("%d token requests, want 1", calls)
			}
			if !exp.Equal(expires) {
				t.Errorf("expires %v, want the status's %v", exp, expires)
			}
			if token != "tok-"+tt.wantSA {
				t.Errorf("token = %q, want the one returned for %q", token, tt.wantSA)
			}
			if got.GetSubresource() != "token" || got.GetNamespace() != "ns" || got.Name != tt.wantSA {
				t.Errorf("request for %s/%s subresource %q, want ns/%s token", got.GetNamespace(), got.Name, got.GetSubresource(), tt.wantSA)
			}
			spec := got.GetObject().(*authenticationv1.TokenRequest).Spec
			if !reflect.DeepEqual(spec.Audiences, []string{"api", "vault"}) {
				t.Errorf("audiences = %q", spec.Audiences)
			}
			if spec.ExpirationSeconds == nil || *spec.ExpirationSeconds != 3600 {
				t.Errorf("expirationSeconds = %v, want 3600", spec.ExpirationSeconds)
			}
			wantRef := authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "p", UID: "uid-1"}
			if spec.BoundObjectRef == nil || *spec.BoundObjectRef != wantRef {
				t.Errorf("boundObjectRef = %+v, want %+v", spec.BoundObjectRef, wantRef)
			}
		})
	}
}

func TestTokenFuncError(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("create", "serviceaccounts", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "serviceaccounts"}, "default", nil)
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p"}}
	token, _, err := tokenFunc(client)(context.Background(), pod, nil, 600)
	if !apierrors.IsForbidden(err) || token != "" {
		t.Errorf("token %q, err %v; want no token and the Forbidden", token, err)
	}
}
