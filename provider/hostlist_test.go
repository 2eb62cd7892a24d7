package provider

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// fakeLister counts its lists; while gate is set each list waits for it.
type fakeLister struct {
	mu    sync.Mutex
	lists int
	gate  chan struct{}
	err   error
	ctrs  []podman.ContainerSummary
}

func (f *fakeLister) list(ctx context.Context) ([]podman.ContainerSummary, error) {
	f.mu.Lock()
	f.lists++
	gate, err, ctrs := f.gate, f.err, f.ctrs
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return ctrs, err
}

func (f *fakeLister) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

func ctrOn(id, node string) podman.ContainerSummary {
	return podman.ContainerSummary{ID: id, Labels: map[string]string{pod.LabelNode: node}}
}

func TestHostListSharesListsAmongNodes(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	f := &fakeLister{ctrs: []podman.ContainerSummary{ctrOn("a1", "a"), ctrOn("b1", "b"), ctrOn("a2", "a"), {ID: "other"}}}
	h := &Host{containers: newHostList(f.list, clk.Now)}
	ctx := context.Background()

	a, err := h.nodeContainers(ctx, "a", 5*time.Second)
	if err != nil || len(a) != 2 || a[0].ID != "a1" || a[1].ID != "a2" {
		t.Fatalf("node a: %v, %v; want a1 and a2", a, err)
	}
	clk.Step(4 * time.Second)
	if b, err := h.nodeContainers(ctx, "b", 5*time.Second); err != nil || len(b) != 1 || b[0].ID != "b1" {
		t.Fatalf("node b: %v, %v; want b1", b, err)
	}
	if n := f.count(); n != 1 {
		t.Errorf("%d lists for two nodes within the age they accept, want 1", n)
	}
	clk.Step(time.Second)
	if _, err := h.nodeContainers(ctx, "b", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if n := f.count(); n != 2 {
		t.Errorf("%d lists once the kept one is 5 s old, want 2", n)
	}
}

func TestHostListOneListAtATime(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	f := &fakeLister{gate: make(chan struct{}), ctrs: []podman.ContainerSummary{ctrOn("a1", "a")}}
	l := newHostList(f.list, clk.Now)

	// A caller that gives up does not end the list: the others get it.
	gaveUp, cancel := context.WithCancel(context.Background())
	results := make(chan error, 3)
	go func() { _, err := l.get(gaveUp, time.Second); results <- err }()
	for range 2 {
		go func() {
			got, err := l.get(context.Background(), time.Second)
			if err == nil && len(got) != 1 {
				err = errors.New("not the list")
			}
			results <- err
		}()
	}
	cancel()
	if err := <-results; !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that gave up: %v, want context.Canceled", err)
	}
	close(f.gate)
	for range 2 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if n := f.count(); n != 1 {
		t.Errorf("%d lists for three callers at once, want 1", n)
	}
}

func TestHostListKeepsNoFailure(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	f := &fakeLister{err: errors.New("podman: no answer")}
	l := newHostList(f.list, clk.Now)
	if _, err := l.get(context.Background(), time.Minute); err == nil {
		t.Fatal("a failed list answered")
	}
	f.mu.Lock()
	f.err, f.ctrs = nil, []podman.ContainerSummary{ctrOn("a1", "a")}
	f.mu.Unlock()
	if got, err := l.get(context.Background(), time.Minute); err != nil || len(got) != 1 || f.count() != 2 {
		t.Errorf("after a failure: %v, %v, %d lists; want the list made again", got, err, f.count())
	}
}

func TestHostListSince(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	f := &fakeLister{ctrs: []podman.ContainerSummary{ctrOn("a1", "a")}}
	l := newHostList(f.list, clk.Now)
	ctx := context.Background()
	if _, err := l.get(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	first := clk.Now()
	clk.Step(time.Second)
	if _, asked, err := l.since(ctx, clk.Now()); err != nil || !asked.Equal(clk.Now()) || f.count() != 2 {
		t.Errorf("since now: asked %v, %v, %d lists; want a new list asked now", asked, err, f.count())
	}
	if _, asked, err := l.since(ctx, first); err != nil || !asked.Equal(clk.Now()) || f.count() != 2 {
		t.Errorf("since before the kept one: asked %v, %v, %d lists; want the kept one", asked, err, f.count())
	}
	if list, at := l.last(); len(list) != 1 || !at.Equal(clk.Now()) {
		t.Errorf("last = %v at %v", list, at)
	}
	// No age is young enough: one list, asked for once the caller waits, ends it.
	if _, err := l.get(ctx, 0); err != nil || f.count() != 3 {
		t.Errorf("get with no age accepted: %v, %d lists; want one more", err, f.count())
	}
}

// The orphan sweeps of a host's nodes share its pod, container and volume
// lists, each node seeing its own objects.
func TestNodeObjectListsShareTheHostsLists(t *testing.T) {
	clk := testingclock.NewFakeClock(time.Unix(1_800_000_000, 0))
	lists := map[string]int{}
	labels := func(node string) map[string]string { return map[string]string{pod.LabelNode: node} }
	h := &Host{
		containers: newHostList(func(context.Context) ([]podman.ContainerSummary, error) {
			lists["containers"]++
			return []podman.ContainerSummary{{ID: "c1", Labels: labels("a")}, {ID: "c2", Labels: labels("b")}}, nil
		}, clk.Now),
		pods: newHostList(func(context.Context) ([]podman.PodSummary, error) {
			lists["pods"]++
			return []podman.PodSummary{{Name: "p1", Labels: labels("a")}, {Name: "p2", Labels: labels("b")}}, nil
		}, clk.Now),
		volumes: newHostList(func(context.Context) ([]podman.Volume, error) {
			lists["volumes"]++
			return []podman.Volume{{Name: "v1", Labels: labels("b")}}, nil
		}, clk.Now),
	}
	ctx := context.Background()
	for _, node := range []string{"a", "b"} {
		objs := nodeObjectLists{host: h, node: node, maxAge: 15 * time.Second}
		pods, err := objs.ListPods(ctx, nil)
		if err != nil || len(pods) != 1 || pods[0].Labels[pod.LabelNode] != node {
			t.Errorf("node %s pods: %v, %v", node, pods, err)
		}
		ctrs, err := objs.ListContainers(ctx, nil)
		if err != nil || len(ctrs) != 1 || ctrs[0].Labels[pod.LabelNode] != node {
			t.Errorf("node %s containers: %v, %v", node, ctrs, err)
		}
		vols, err := objs.ListVolumes(ctx, nil)
		if err != nil || len(vols) != map[string]int{"a": 0, "b": 1}[node] {
			t.Errorf("node %s volumes: %v, %v", node, vols, err)
		}
	}
	if lists["pods"] != 1 || lists["containers"] != 1 || lists["volumes"] != 1 {
		t.Errorf("lists = %v, want one of each kind for both nodes' sweeps", lists)
	}
}
