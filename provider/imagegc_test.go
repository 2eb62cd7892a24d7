package provider

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
)

// fakeImageStore is a host's podman store: images, containers made from
// them, and a disk whose use is base plus the images' sizes.
type fakeImageStore struct {
	images     []podman.ImageSummary
	containers []podman.ContainerSummary
	failRemove map[string]error
	removed    []string
	base       uint64
	total      uint64
}

func (f *fakeImageStore) ListImageSummaries(context.Context) ([]podman.ImageSummary, error) {
	return slices.Clone(f.images), nil
}

func (f *fakeImageStore) ListContainers(context.Context, map[string]string) ([]podman.ContainerSummary, error) {
	return slices.Clone(f.containers), nil
}

func (f *fakeImageStore) RemoveImage(_ context.Context, id string) error {
	if err := f.failRemove[id]; err != nil {
		return err
	}
	for _, c := range f.containers {
		if c.ImageID == id {
			return errors.New("image is in use by a container")
		}
	}
	f.images = slices.DeleteFunc(f.images, func(im podman.ImageSummary) bool { return im.ID == id })
	f.removed = append(f.removed, id)
	return nil
}

func (f *fakeImageStore) usage() (uint64, uint64, bool) {
	used := f.base
	for _, im := range f.images {
		used += uint64(im.Size)
	}
	return used, f.total, true
}

type gcEvent struct{ typ, reason, msg string }

func newTestImageGC(store *fakeImageStore, clk *clocktesting.FakeClock, policy rbnv1.ImageGCSpec, named ...string) (*ImageGC, *[]gcEvent) {
	spec := rbnv1.Default(&rbnv1.RemoteBuildNodeSpec{ImageGC: &policy})
	var events []gcEvent
	g := NewImageGC(ImageGCConfig{
		Policy: spec.ImageGC, Clock: clk,
		Named: func() []string { return named },
		Event: func(typ, reason, msg string) { events = append(events, gcEvent{typ, reason, msg}) },
		store: store, usage: store.usage,
	})
	return g, &events
}

func image(id string, size int64, names ...string) podman.ImageSummary {
	return podman.ImageSummary{ID: id, Size: size, Names: names}
}

func TestImageGCFreesDownToTheLowThreshold(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	// 100 bytes of disk, 30 of them other files: images take 60, 90% used.
	store := &fakeImageStore{base: 30, total: 100, images: []podman.ImageSummary{
		image("old", 10, "registry.test/old:1"),
		image("older", 10, "registry.test/older:1"),
		image("running", 10, "registry.test/running:1"),
		image("pause", 10, "localhost/podman-pause:5.4.0"),
		image("pinned", 10, "registry.test/builder:1"),
		image("named", 10, "docker.io/library/busybox:latest"),
	}, containers: []podman.ContainerSummary{
		{ID: "c1", ImageID: "running"},
		{ID: "infra", ImageID: "pause", Infra: true},
		{ID: "c2", ImageID: "older"}, // used until the second look
	}}
	g, events := newTestImageGC(store, clk, rbnv1.ImageGCSpec{Pinned: []string{"registry.test/builder:1"}}, "busybox")

	// First look: everything is younger than the minimum age; the disk is
	// above 85% but nothing may go yet.
	if err := g.Collect(context.Background()); err == nil {
		t.Fatal("want a FreeDiskSpaceError while every image is younger than the minimum age")
	}
	if len(store.removed) != 0 {
		t.Fatalf("removed %v before the minimum age", store.removed)
	}
	clk.Step(time.Minute)
	if err := g.Collect(context.Background()); err == nil { // "older" last used now
		t.Fatal("want a FreeDiskSpaceError while every image is younger than the minimum age")
	}
	store.containers = store.containers[:2] // "older"'s container went
	clk.Step(3 * time.Minute)
	*events = nil
	// 90 used, goal 80: 10 bytes. "old" was never used (first seen 4 min
	// ago), "older" last used 3 min ago: "old" goes first and is enough.
	if err := g.Collect(context.Background()); err != nil {
		t.Fatalf("Collect: %v", err)
	}
	if !slices.Equal(store.removed, []string{"old"}) {
		t.Errorf("removed %v, want [old]", store.removed)
	}
	if len(*events) != 0 {
		t.Errorf("events %v, want none", *events)
	}
	// Above again: "older" is the only one left that may go.
	store.base = 45 // 95 used: 15 bytes to free
	if err := g.Collect(context.Background()); err == nil {
		t.Fatal("want a FreeDiskSpaceError: only 10 bytes could go")
	} else if fe := (*FreeDiskSpaceError)(nil); !errors.As(err, &fe) || fe.Goal != 15 || fe.Freed != 10 {
		t.Errorf("err %v, want goal 15, freed 10", err)
	}
	if !slices.Equal(store.removed, []string{"old", "older"}) {
		t.Errorf("removed %v, want [old older]", store.removed)
	}
	if len(*events) != 1 || (*events)[0].reason != ReasonFreeDiskSpaceFailed || (*events)[0].typ != "Warning" {
		t.Errorf("events %v, want one FreeDiskSpaceFailed warning", *events)
	}
	st := g.Stats()
	if st.Removed[ImageGCReasonSpace] != 2 || st.Bytes != 20 || st.Failures != 3 {
		t.Errorf("stats %+v, want 2 removed for space, 20 bytes, 3 failures", st)
	}
}

func TestImageGCBelowTheHighThresholdRemovesNothing(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	store := &fakeImageStore{base: 10, total: 100, images: []podman.ImageSummary{image("a", 10, "registry.test/a:1")}}
	g, events := newTestImageGC(store, clk, rbnv1.ImageGCSpec{})
	clk.Step(time.Hour)
	for range 2 {
		if err := g.Collect(context.Background()); err != nil {
			t.Fatal(err)
		}
		clk.Step(time.Hour)
	}
	if len(store.removed) != 0 || len(*events) != 0 {
		t.Errorf("removed %v, events %v at 20%% use", store.removed, *events)
	}
}

func TestImageGCMaximumAge(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	store := &fakeImageStore{base: 0, total: 100, images: []podman.ImageSummary{
		image("stale", 1, "registry.test/stale:1"),
		image("used", 1, "registry.test/used:1"),
	}, containers: []podman.ContainerSummary{{ID: "c", ImageID: "used"}}}
	g, _ := newTestImageGC(store, clk, rbnv1.ImageGCSpec{MaximumAge: &metav1.Duration{Duration: time.Hour}})
	if err := g.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk.Step(50 * time.Minute)
	if err := g.Collect(context.Background()); err != nil { // "used" last used now
		t.Fatal(err)
	}
	store.containers = nil
	if len(store.removed) != 0 {
		t.Fatalf("removed %v before the maximum age", store.removed)
	}
	clk.Step(20 * time.Minute)
	if err := g.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(store.removed, []string{"stale"}) {
		t.Errorf("removed %v, want [stale] (unused 70 min; used 20 min ago kept)", store.removed)
	}
	if st := g.Stats(); st.Removed[ImageGCReasonAge] != 1 {
		t.Errorf("stats %+v, want one removed for age", st)
	}
}

func TestImageGCPassesOverAnImageItCannotRemove(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC))
	store := &fakeImageStore{base: 80, total: 100, images: []podman.ImageSummary{
		image("a", 5, "registry.test/a:1"),
		image("b", 15, "registry.test/b:1"),
	}, failRemove: map[string]error{"a": errors.New("image used by a container made since the listing")}}
	g, events := newTestImageGC(store, clk, rbnv1.ImageGCSpec{HighThresholdPercent: ptr.To[int32](90), LowThresholdPercent: ptr.To[int32](50), MinimumAge: &metav1.Duration{}})
	err := g.Collect(context.Background())
	if err == nil {
		t.Fatal("want the removal's error")
	}
	if !slices.Equal(store.removed, []string{"b"}) {
		t.Errorf("removed %v, want [b] after a's failure", store.removed)
	}
	if len(*events) != 1 || (*events)[0].reason != ReasonImageGCFailed {
		t.Errorf("events %v, want one ImageGCFailed", *events)
	}
}
