package podobjects

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func secret(ns, name, value string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"k": []byte(value)}}
}

// requests records the namespace and field selector of every list and
// watch of Secrets.
type requests struct {
	mu   sync.Mutex
	seen []string
}

func (r *requests) record(client *fake.Clientset) {
	for _, verb := range []string{"list", "watch"} {
		client.PrependReactor(verb, "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
			var selector string
			switch a := a.(type) {
			case k8stesting.ListAction:
				selector = a.GetListRestrictions().Fields.String()
			case k8stesting.WatchAction:
				selector = a.GetWatchRestrictions().Fields.String()
			}
			r.mu.Lock()
			r.seen = append(r.seen, a.GetVerb()+" "+a.GetNamespace()+" "+selector)
			r.mu.Unlock()
			return false, nil, nil
		})
	}
}

func (r *requests) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	}); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func TestGetReadsOneObjectAtATime(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(secret("ns", "a", "1"), secret("ns", "b", "2"), secret("other", "a", "3"))
	var r requests
	r.record(client)
	c := NewSecrets(ctx, client, Options{})

	if _, err := c.Get(ctx, "ns", "a"); !errors.Is(err, ErrNotTracked) {
		t.Fatalf("Get before Track: %v, want ErrNotTracked", err)
	}
	c.Track("pod-1", "ns", []string{"a", "missing"})
	got, err := c.Get(ctx, "ns", "a")
	if err != nil || string(got.Data["k"]) != "1" {
		t.Fatalf("Get ns/a: %v, %v; want the Secret with k=1", got, err)
	}
	if _, err := c.Get(ctx, "ns", "missing"); !apierrors.IsNotFound(err) {
		t.Fatalf("Get ns/missing: %v, want NotFound", err)
	}
	if _, err := c.Get(ctx, "ns", "b"); !errors.Is(err, ErrNotTracked) {
		t.Fatalf("Get ns/b, which no pod names: %v, want ErrNotTracked", err)
	}
	// Every request names its one object in its namespace: what the Node
	// authorizer allows a node.
	for _, req := range r.all() {
		switch req {
		case "list ns metadata.name=a", "watch ns metadata.name=a", "list ns metadata.name=missing", "watch ns metadata.name=missing":
		default:
			t.Errorf("request %q: want a list or watch of ns/a or ns/missing by name", req)
		}
	}
}

func TestTrackCountsPods(t *testing.T) {
	ctx := t.Context()
	c := NewSecrets(ctx, fake.NewClientset(secret("ns", "a", "1"), secret("ns", "b", "2")), Options{})
	c.Track("pod-1", "ns", []string{"a"})
	c.Track("pod-2", "ns", []string{"a", "b"})
	if n := c.Watched(); n != 2 {
		t.Fatalf("watched %d, want 2 (a, b)", n)
	}
	c.Forget("pod-2")
	if n := c.Watched(); n != 1 {
		t.Fatalf("after pod-2 is forgotten: watched %d, want 1 (a, still pod-1's)", n)
	}
	if _, err := c.Get(ctx, "ns", "b"); !errors.Is(err, ErrNotTracked) {
		t.Fatalf("Get ns/b after its only pod is forgotten: %v, want ErrNotTracked", err)
	}
	// A pod's names replaced: the old ones no longer count for it.
	c.Track("pod-1", "ns", []string{"b"})
	if _, err := c.Get(ctx, "ns", "a"); !errors.Is(err, ErrNotTracked) {
		t.Fatalf("Get ns/a after pod-1 names b instead: %v, want ErrNotTracked", err)
	}
	if s, err := c.Get(ctx, "ns", "b"); err != nil || string(s.Data["k"]) != "2" {
		t.Fatalf("Get ns/b: %v, %v", s, err)
	}
	c.Forget("pod-1")
	c.Forget("pod-1") // twice: nothing more to drop
	if n := c.Watched(); n != 0 {
		t.Fatalf("after every pod is forgotten: watched %d, want 0", n)
	}
}

func TestChangesAreSeen(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(secret("ns", "a", "1"))
	c := NewSecrets(ctx, client, Options{})
	c.Track("pod-1", "ns", []string{"a"})
	if _, err := c.Get(ctx, "ns", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := client.CoreV1().Secrets("ns").Update(ctx, secret("ns", "a", "2"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	until(t, "the update read", func() bool {
		s, err := c.Get(ctx, "ns", "a")
		return err == nil && string(s.Data["k"]) == "2"
	})
	if err := client.CoreV1().Secrets("ns").Delete(ctx, "a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	until(t, "the deletion read", func() bool {
		_, err := c.Get(ctx, "ns", "a")
		return apierrors.IsNotFound(err)
	})
}

func TestForbiddenReadIsReported(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(secret("ns", "a", "1"))
	client.PrependReactor("list", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(corev1.Resource("secrets"), "a", errors.New(`no relationship found between node "n" and this object`))
	})
	c := NewSecrets(ctx, client, Options{SyncTimeout: 300 * time.Millisecond})
	c.Track("pod-1", "ns", []string{"a"})
	_, err := c.Get(ctx, "ns", "a")
	var ns *NotSyncedError
	if !errors.As(err, &ns) || !apierrors.IsForbidden(err) {
		t.Fatalf("Get of a Secret the node may not read: %v, want a NotSyncedError wrapping the Forbidden", err)
	}
	t.Log(err)
}

func TestConfigMaps(t *testing.T) {
	ctx := t.Context()
	client := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "c"}, Data: map[string]string{"k": "v"}})
	c := NewConfigMaps(ctx, client, Options{})
	c.Track("pod-1", "ns", []string{"c"})
	cm, err := c.Get(ctx, "ns", "c")
	if err != nil || cm.Data["k"] != "v" {
		t.Fatalf("Get ns/c: %v, %v", cm, err)
	}
}
