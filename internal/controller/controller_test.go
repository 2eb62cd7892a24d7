package controller

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/config"
)

// recordingBroadcaster gives every recorder the one FakeRecorder, so a test
// reads the events the controller emits synchronously, without a sink.
type recordingBroadcaster struct {
	record.EventBroadcaster // nil: only NewRecorder is used
	rec                     *record.FakeRecorder
}

func (b recordingBroadcaster) NewRecorder(*runtime.Scheme, corev1.EventSource) record.EventRecorderLogger {
	return b.rec
}

// events returns the events recorded so far.
func events(rec *record.FakeRecorder) []string {
	var out []string
	for {
		select {
		case e := <-rec.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func TestSSHMaterial(t *testing.T) {
	secret := func(name string, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "rbn", Name: name}, Data: data}
	}
	key, kh := []byte("-----BEGIN OPENSSH PRIVATE KEY-----"), []byte("host ssh-ed25519 AAAA")
	secrets := []*corev1.Secret{
		secret("valid", map[string][]byte{rbnv1.SecretKeyPrivateKey: key, rbnv1.SecretKeyKnownHosts: kh, "extra": []byte("x")}),
		secret("no-key", map[string][]byte{rbnv1.SecretKeyKnownHosts: kh}),
		secret("no-known-hosts", map[string][]byte{rbnv1.SecretKeyPrivateKey: key}),
		secret("empty-key", map[string][]byte{rbnv1.SecretKeyPrivateKey: {}, rbnv1.SecretKeyKnownHosts: kh}),
		secret("empty", nil),
		{ObjectMeta: metav1.ObjectMeta{Namespace: "other", Name: "elsewhere"},
			Data: map[string][]byte{rbnv1.SecretKeyPrivateKey: key, rbnv1.SecretKeyKnownHosts: kh}},
	}
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	indexer := factory.Core().V1().Secrets().Informer().GetIndexer()
	for _, s := range secrets {
		if err := indexer.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	c := &Controller{own: factory, namespace: "rbn"}

	tests := []struct {
		name, ns, secret string
		wantReason       string
		wantMsg          string
	}{
		{"valid", "rbn", "valid", "", ""},
		{"missing", "rbn", "gone", ReasonSecretNotFound, "Secret rbn/gone not found"},
		{"named in another namespace", "rbn", "elsewhere", ReasonSecretNotFound, "Secret rbn/elsewhere not found"},
		{"in another namespace", "other", "elsewhere", ReasonSecretNamespace, "Secret other/elsewhere: rbn-kubelet reads SSH Secrets in its own namespace rbn only; move the Secret there"},
		{"no private key", "rbn", "no-key", ReasonSecretInvalid, "Secret rbn/no-key lacks key(s) [ssh-privatekey]"},
		{"no known_hosts", "rbn", "no-known-hosts", ReasonSecretInvalid, "Secret rbn/no-known-hosts lacks key(s) [known_hosts]"},
		{"empty private key", "rbn", "empty-key", ReasonSecretInvalid, "Secret rbn/empty-key lacks key(s) [ssh-privatekey]"},
		{"no data", "rbn", "empty", ReasonSecretInvalid, "Secret rbn/empty lacks key(s) [ssh-privatekey known_hosts]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := &rbnv1.RemoteBuildNodeSpec{SSHSecretRef: rbnv1.SecretReference{Namespace: tt.ns, Name: tt.secret}}
			gotKey, gotKH, reason, msg := c.sshMaterial(spec)
			if reason != tt.wantReason || msg != tt.wantMsg {
				t.Errorf("reason %q message %q, want %q %q", reason, msg, tt.wantReason, tt.wantMsg)
			}
			if tt.wantReason != "" {
				if gotKey != nil || gotKH != nil {
					t.Errorf("material returned with a failure: %q %q", gotKey, gotKH)
				}
				return
			}
			if string(gotKey) != string(key) || string(gotKH) != string(kh) {
				t.Errorf("key %q known_hosts %q, want the Secret's", gotKey, gotKH)
			}
		})
	}
}

func TestConfigHash(t *testing.T) {
	base := func() *rbnv1.RemoteBuildNodeSpec {
		return &rbnv1.RemoteBuildNodeSpec{
			Address: "10.0.0.1", Port: 22, User: "root",
			SSHSecretRef: rbnv1.SecretReference{Namespace: "rbn", Name: "ssh"},
			Labels:       map[string]string{"a": "1", "b": "2", "c": "3"},
			Taints:       []corev1.Taint{rbnv1.DefaultTaint},
		}
	}
	key, kh := []byte("key"), []byte("known")
	ref := configHash(base(), key, kh)
	if got := configHash(base(), []byte("key"), []byte("known")); got != ref {
		t.Errorf("equal input hashed differently: %s vs %s", got, ref)
	}

	tests := []struct {
		name   string
		change func(s *rbnv1.RemoteBuildNodeSpec)
		key    string
		kh     string
	}{
		{name: "address", change: func(s *rbnv1.RemoteBuildNodeSpec) { s.Address = "10.0.0.2" }, key: "key", kh: "known"},
		{name: "label value", change: func(s *rbnv1.RemoteBuildNodeSpec) { s.Labels["b"] = "x" }, key: "key", kh: "known"},
		{name: "taints emptied", change: func(s *rbnv1.RemoteBuildNodeSpec) { s.Taints = []corev1.Taint{} }, key: "key", kh: "known"},
		{name: "secret ref", change: func(s *rbnv1.RemoteBuildNodeSpec) { s.SSHSecretRef.Name = "ssh2" }, key: "key", kh: "known"},
		{name: "key", key: "key2", kh: "known"},
		{name: "known_hosts", key: "key", kh: "known2"},
		// The separator keeps bytes from moving between key and known_hosts unseen.
		{name: "byte moved from known_hosts to key", key: "keyk", kh: "nown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base()
			if tt.change != nil {
				tt.change(s)
			}
			if got := configHash(s, []byte(tt.key), []byte(tt.kh)); got == ref {
				t.Errorf("hash unchanged: %s", got)
			}
		})
	}
}

func TestStatusEqual(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	base := func() *rbnv1.RemoteBuildNodeStatus {
		return &rbnv1.RemoteBuildNodeStatus{
			ObservedGeneration: 2, Phase: rbnv1.PhaseReady, NodeName: "n1",
			Host:      &rbnv1.HostInfo{Architecture: "amd64", PodmanVersion: "5.4.0"},
			LastError: &rbnv1.HostError{Reason: "SSHUnreachable", Message: "dial: refused", Time: t0},
			Conditions: []metav1.Condition{{
				Type: "Ready", Status: metav1.ConditionTrue, Reason: "HostReady", LastTransitionTime: t0, ObservedGeneration: 2,
			}},
		}
	}
	tests := []struct {
		name   string
		change func(s *rbnv1.RemoteBuildNodeStatus)
		want   bool
	}{
		{"same", func(*rbnv1.RemoteBuildNodeStatus) {}, true},
		{"phase", func(s *rbnv1.RemoteBuildNodeStatus) { s.Phase = rbnv1.PhaseNotReady }, false},
		{"observed generation", func(s *rbnv1.RemoteBuildNodeStatus) { s.ObservedGeneration = 3 }, false},
		{"host fact", func(s *rbnv1.RemoteBuildNodeStatus) { s.Host.PodmanVersion = "5.4.1" }, false},
		{"host facts gone", func(s *rbnv1.RemoteBuildNodeStatus) { s.Host = nil }, false},
		{"last error time", func(s *rbnv1.RemoteBuildNodeStatus) { s.LastError.Time = metav1.NewTime(t0.Add(time.Minute)) }, false},
		{"condition message", func(s *rbnv1.RemoteBuildNodeStatus) { s.Conditions[0].Message = "x" }, false},
		{"condition transition time", func(s *rbnv1.RemoteBuildNodeStatus) {
			s.Conditions[0].LastTransitionTime = metav1.NewTime(t0.Add(time.Second))
		}, false},
		{"conditions gone", func(s *rbnv1.RemoteBuildNodeStatus) { s.Conditions = nil }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := base()
			tt.change(b)
			if got := statusEqual(base(), b); got != tt.want {
				t.Errorf("statusEqual = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSetError(t *testing.T) {
	old := metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	tests := []struct {
		name         string
		prev         *rbnv1.HostError
		reason, msg  string
		wantPrevTime bool // the recorded error (and its time) stays
	}{
		{"first error", nil, "SSHUnreachable", "refused", false},
		{"same error again", &rbnv1.HostError{Reason: "SSHUnreachable", Message: "refused", Time: old}, "SSHUnreachable", "refused", true},
		{"other message", &rbnv1.HostError{Reason: "SSHUnreachable", Message: "refused", Time: old}, "SSHUnreachable", "timeout", false},
		{"other reason", &rbnv1.HostError{Reason: "SSHUnreachable", Message: "refused", Time: old}, "HostKeyMismatch", "refused", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rbn := &rbnv1.RemoteBuildNode{Status: rbnv1.RemoteBuildNodeStatus{LastError: tt.prev}}
			(&Controller{}).setError(rbn, tt.reason, tt.msg)
			le := rbn.Status.LastError
			if le == nil || le.Reason != tt.reason || le.Message != tt.msg {
				t.Fatalf("lastError = %+v, want %s: %s", le, tt.reason, tt.msg)
			}
			if kept := le.Time.Equal(&old); kept != tt.wantPrevTime {
				t.Errorf("time %v kept = %v, want %v", le.Time, kept, tt.wantPrevTime)
			}
			if !tt.wantPrevTime && le.Time.IsZero() {
				t.Error("new error without a time")
			}
		})
	}
}

func TestSetInvalid(t *testing.T) {
	old := metav1.NewTime(time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC))
	// invalid is the status setInvalid writes for reason and msg at generation 3.
	invalid := func(reason, msg string) rbnv1.RemoteBuildNodeStatus {
		return rbnv1.RemoteBuildNodeStatus{
			Phase: rbnv1.PhaseInvalid, ObservedGeneration: 3,
			LastError: &rbnv1.HostError{Reason: reason, Message: msg, Time: old},
			Conditions: []metav1.Condition{{
				Type: "Ready", Status: metav1.ConditionFalse, Reason: reason, Message: msg,
				ObservedGeneration: 3, LastTransitionTime: old,
			}},
		}
	}
	ready := rbnv1.RemoteBuildNodeStatus{
		Phase: rbnv1.PhaseReady, ObservedGeneration: 2, NodeName: "n1",
		Conditions: []metav1.Condition{{Type: "Ready", Status: metav1.ConditionTrue, Reason: "HostReady", ObservedGeneration: 2, LastTransitionTime: old}},
	}
	tests := []struct {
		name      string
		prev      rbnv1.RemoteBuildNodeStatus
		code      int // the apiserver's answer; 0: 200
		wantWrite bool
		wantErr   bool
	}{
		{name: "ready node becomes invalid", prev: ready, wantWrite: true},
		{name: "new node", wantWrite: true},
		{name: "other problem recorded", prev: invalid(ReasonSecretNotFound, "Secret rbn/ssh not found"), wantWrite: true},
		{name: "same problem recorded: no write, no event", prev: invalid(ReasonSecretInvalid, "Secret rbn/ssh lacks key(s) [known_hosts]")},
		{name: "write fails", prev: ready, code: http.StatusInternalServerError, wantWrite: true, wantErr: true},
	}
	const reason, msg = ReasonSecretInvalid, "Secret rbn/ssh lacks key(s) [known_hosts]"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api, rc := newRBNAPI(t)
			api.setCode(tt.code)
			rec := record.NewFakeRecorder(10)
			c := &Controller{rbn: rc, broadcast: recordingBroadcaster{rec: rec}}
			rbn := &rbnv1.RemoteBuildNode{
				ObjectMeta: metav1.ObjectMeta{Name: "n1", Generation: 3},
				Status:     *tt.prev.DeepCopy(),
			}

			err := c.setInvalid(context.Background(), rbn, reason, msg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			reqs := api.requests()
			evs := events(rec)
			if !tt.wantWrite {
				if len(reqs) != 0 || len(evs) != 0 {
					t.Errorf("requests %+v, events %q; want none", reqs, evs)
				}
				return
			}
			if len(reqs) != 1 || reqs[0].method != http.MethodPut || reqs[0].path != rbnPath+"n1/status" {
				t.Fatalf("requests = %+v, want one status update", reqs)
			}
			if want := []string{"Warning " + reason + " " + msg}; !reflect.DeepEqual(evs, want) {
				t.Errorf("events = %q, want %q", evs, want)
			}
			var sent rbnv1.RemoteBuildNode
			if err := json.Unmarshal([]byte(reqs[0].body), &sent); err != nil {
				t.Fatal(err)
			}
			st := sent.Status
			if st.Phase != rbnv1.PhaseInvalid || st.ObservedGeneration != 3 {
				t.Errorf("phase %q observedGeneration %d, want Invalid 3", st.Phase, st.ObservedGeneration)
			}
			if st.NodeName != tt.prev.NodeName {
				t.Errorf("nodeName = %q, want it kept (%q)", st.NodeName, tt.prev.NodeName)
			}
			if le := st.LastError; le == nil || le.Reason != reason || le.Message != msg || le.Time.Equal(&old) {
				t.Errorf("lastError = %+v, want a new %s: %s", le, reason, msg)
			}
			if len(st.Conditions) != 1 {
				t.Fatalf("conditions = %+v, want Ready only", st.Conditions)
			}
			cond := st.Conditions[0]
			if cond.Type != "Ready" || cond.Status != metav1.ConditionFalse || cond.Reason != reason || cond.Message != msg || cond.ObservedGeneration != 3 {
				t.Errorf("condition = %+v", cond)
			}
		})
	}
}

var (
	podsGVR = corev1.SchemeGroupVersion.WithResource("pods")
	podsGVK = corev1.SchemeGroupVersion.WithKind("Pod")
)

// honourPodFieldSelector makes the fake's pod lists apply field selectors on
// spec.nodeName, as the apiserver does (the fake applies label selectors only).
func honourPodFieldSelector(client *fake.Clientset) {
	client.PrependReactor("list", "pods", func(a clienttesting.Action) (bool, runtime.Object, error) {
		la := a.(clienttesting.ListAction)
		obj, err := client.Tracker().List(podsGVR, podsGVK, la.GetNamespace())
		if err != nil {
			return true, nil, err
		}
		sel := la.GetListRestrictions().Fields
		list := obj.(*corev1.PodList)
		list.Items = slices.DeleteFunc(list.Items, func(p corev1.Pod) bool {
			return !sel.Matches(fields.Set{"spec.nodeName": p.Spec.NodeName})
		})
		return true, list, nil
	})
}

func TestFinalize(t *testing.T) {
	pod := func(ns, name, node string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: node}}
	}
	node := func(name string) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{rbnv1.LabelRemoteBuildNode: "true"}}}
	}
	// foreign is another kubelet's Node of the RemoteBuildNode's name.
	foreign := func(name string) *corev1.Node { return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}} }
	lease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: corev1.NamespaceNodeLease, Name: name}}
	}
	others := []runtime.Object{pod("a", "elsewhere", "n2"), pod("a", "pending", ""), node("n2"), lease("n2")}
	forbidden := func(resource string) clienttesting.ReactionFunc {
		return func(clienttesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: resource}, "", nil)
		}
	}

	tests := []struct {
		name       string
		finalizers []string
		objects    []runtime.Object
		fail       string // "verb resource" the fake refuses
		wantErr    string
		// wantDeletes lists the delete calls made, as "resource namespace/name".
		wantDeletes []string
		// wantPatch is the finalizer patch sent; "" for none.
		wantPatch string
		// nodeServices: config nodeServices.
		nodeServices bool
	}{{
		name:         "with node Services: the node's Service and EndpointSlice go too",
		finalizers:   []string{rbnv1.Finalizer},
		objects:      []runtime.Object{node("n1"), lease("n1")},
		nodeServices: true,
		wantDeletes: []string{
			"nodes /n1", "leases " + corev1.NamespaceNodeLease + "/n1", "endpointslices rbn-system/rbn-node-n1", "services rbn-system/rbn-node-n1",
		},
		wantPatch: `{"metadata":{"finalizers":[],"resourceVersion":"42"}}`,
	}, {
		name:       "pods, node and lease removed, then our finalizer",
		finalizers: []string{"example.com/keep", rbnv1.Finalizer},
		objects:    []runtime.Object{pod("a", "p1", "n1"), pod("b", "p2", "n1"), node("n1"), lease("n1")},
		wantDeletes: []string{
			"pods a/p1", "pods b/p2", "nodes /n1", "leases " + corev1.NamespaceNodeLease + "/n1",
		},
		wantPatch: `{"metadata":{"finalizers":["example.com/keep"],"resourceVersion":"42"}}`,
	}, {
		name:       "another's Node of that name (refused NodeNameTaken): left alone, our finalizer removed",
		finalizers: []string{rbnv1.Finalizer},
		objects:    []runtime.Object{pod("a", "p1", "n1"), foreign("n1"), lease("n1")},
		wantPatch:  `{"metadata":{"finalizers":[],"resourceVersion":"42"}}`,
	}, {
		name:        "node and lease already gone",
		finalizers:  []string{rbnv1.Finalizer},
		wantDeletes: []string{"nodes /n1", "leases " + corev1.NamespaceNodeLease + "/n1"},
		wantPatch:   `{"metadata":{"finalizers":[],"resourceVersion":"42"}}`,
	}, {
		name:       "not ours to finalize",
		finalizers: []string{"example.com/keep"},
		objects:    []runtime.Object{pod("a", "p1", "n1"), node("n1"), lease("n1")},
	}, {
		name:        "pod deletion refused: finalizer kept",
		finalizers:  []string{rbnv1.Finalizer},
		objects:     []runtime.Object{pod("a", "p1", "n1"), node("n1"), lease("n1")},
		fail:        "delete pods",
		wantErr:     "delete pod a/p1",
		wantDeletes: []string{"pods a/p1"},
	}, {
		name:        "node deletion refused: finalizer kept",
		finalizers:  []string{rbnv1.Finalizer},
		objects:     []runtime.Object{node("n1"), lease("n1")},
		fail:        "delete nodes",
		wantErr:     "delete node n1",
		wantDeletes: []string{"nodes /n1"},
	}, {
		name:        "lease deletion refused: finalizer kept",
		finalizers:  []string{rbnv1.Finalizer},
		objects:     []runtime.Object{node("n1"), lease("n1")},
		fail:        "delete leases",
		wantErr:     "delete lease n1",
		wantDeletes: []string{"nodes /n1", "leases " + corev1.NamespaceNodeLease + "/n1"},
	}, {
		name:       "pods unlistable: nothing deleted",
		finalizers: []string{rbnv1.Finalizer},
		objects:    []runtime.Object{node("n1"), lease("n1")},
		fail:       "list pods",
		wantErr:    "list pods of node n1",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset(append(slices.Clone(others), tt.objects...)...)
			honourPodFieldSelector(client)
			if tt.fail != "" {
				verb, resource, _ := strings.Cut(tt.fail, " ")
				client.PrependReactor(verb, resource, forbidden(resource))
			}
			api, rc := newRBNAPI(t)
			c := &Controller{client: client, rbn: rc, namespace: "rbn-system", cfg: &config.KubeletConfiguration{NodeServices: tt.nodeServices}}
			now := metav1.Now()
			rbn := &rbnv1.RemoteBuildNode{ObjectMeta: metav1.ObjectMeta{
				Name: "n1", ResourceVersion: "42", DeletionTimestamp: &now, Finalizers: tt.finalizers,
			}}

			err := c.finalize(context.Background(), rbn)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("finalize: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !apierrors.IsForbidden(err)) {
				t.Fatalf("err = %v, want %q wrapping the Forbidden", err, tt.wantErr)
			}

			var deletes []string
			for _, a := range client.Actions() {
				da, ok := a.(clienttesting.DeleteAction)
				if !ok {
					continue
				}
				deletes = append(deletes, a.GetResource().Resource+" "+a.GetNamespace()+"/"+da.GetName())
				if a.GetResource().Resource == "pods" {
					if g := da.GetDeleteOptions().GracePeriodSeconds; g == nil || *g != 0 {
						t.Errorf("pod %s deleted without a grace period of 0 (%v): it cannot run anywhere", da.GetName(), da.GetDeleteOptions())
					}
				}
			}
			if !reflect.DeepEqual(deletes, tt.wantDeletes) {
				t.Errorf("deletes %q, want %q", deletes, tt.wantDeletes)
			}
			for _, o := range others { // bystanders survive
				if _, err := client.Tracker().Get(gvrOf(o), o.(metav1.Object).GetNamespace(), o.(metav1.Object).GetName()); err != nil {
					t.Errorf("%s: %v", o.(metav1.Object).GetName(), err)
				}
			}

			reqs := api.requests()
			if tt.wantPatch == "" {
				if len(reqs) != 0 {
					t.Errorf("requests to the RemoteBuildNode: %+v, want none", reqs)
				}
				return
			}
			if len(reqs) != 1 || reqs[0].method != http.MethodPatch || reqs[0].path != rbnPath+"n1" {
				t.Fatalf("requests = %+v, want the finalizer patch", reqs)
			}
			if reqs[0].body != tt.wantPatch {
				t.Errorf("patch = %s, want %s", reqs[0].body, tt.wantPatch)
			}
		})
	}
}

func gvrOf(o runtime.Object) schema.GroupVersionResource {
	switch o.(type) {
	case *corev1.Pod:
		return podsGVR
	case *corev1.Node:
		return corev1.SchemeGroupVersion.WithResource("nodes")
	case *coordinationv1.Lease:
		return coordinationv1.SchemeGroupVersion.WithResource("leases")
	}
	panic("no resource for " + reflect.TypeOf(o).String())
}
