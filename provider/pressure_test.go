package provider

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
)

// fakeEvictable is a node's pods as DiskPressure sees them.
type fakeEvictable struct {
	pressure bool
	usages   []podDiskUsage
	evicted  []types.UID
	messages []string
	ended    map[types.UID]bool
	// toReclaim is how many ended pods the next reclaimEnded asks.
	toReclaim int
}

func (f *fakeEvictable) reclaimEnded() int {
	n := f.toReclaim
	f.toReclaim = 0
	return n
}

func (f *fakeEvictable) setDiskPressure(under bool) { f.pressure = under }

func (f *fakeEvictable) diskUsages(since time.Time) []podDiskUsage {
	var out []podDiskUsage
	for _, u := range f.usages {
		if !u.at.Before(since) && !f.ended[u.uid] {
			out = append(out, u)
		}
	}
	return out
}

func (f *fakeEvictable) evict(uid types.UID, message string) bool {
	f.evicted = append(f.evicted, uid)
	f.messages = append(f.messages, message)
	return true
}

func (f *fakeEvictable) stopped(uid types.UID) bool { return f.ended[uid] }

func (f *fakeEvictable) evictionCounts() map[string]uint64 {
	return map[string]uint64{"nodefs.available": uint64(len(f.evicted))}
}

type pressureHarness struct {
	d      *DiskPressure
	clock  *clocktesting.FakeClock
	info   *podman.HostInfo
	pods   *fakeEvictable
	freed  int64 // what the next image reclaim frees
	calls  int   // image reclaims
	events []gcEvent
}

// newPressureHarness: a 100 GiB store with 5 GiB available, under the
// default 10% threshold.
func newPressureHarness(t *testing.T, availableBelow string) *pressureHarness {
	t.Helper()
	h := &pressureHarness{
		clock: clocktesting.NewFakeClock(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)),
		info:  &podman.HostInfo{StorageTotal: 100 << 30, StorageUsed: 95 << 30, StorageAvailable: 5 << 30},
		pods:  &fakeEvictable{ended: map[types.UID]bool{}},
	}
	spec := rbnv1.Default(&rbnv1.RemoteBuildNodeSpec{})
	if availableBelow != "" {
		spec.DiskPressure.AvailableBelow = availableBelow
	}
	h.d = NewDiskPressure(DiskPressureConfig{
		Spec: spec, Clock: h.clock,
		Event: func(typ, reason, msg string) { h.events = append(h.events, gcEvent{typ, reason, msg}) },
		facts: func() *podman.HostInfo { return h.info },
		pods:  h.pods,
		images: func(context.Context) (int64, error) {
			h.calls++
			return h.freed, nil
		},
	})
	return h
}

func gi(n int64) int64 { return n << 30 }

func (h *pressureHarness) measured(uid string, priority int32, request int64, containers map[string]int64) {
	u := podDiskUsage{uid: types.UID(uid), name: "ns/" + uid, priority: priority, at: h.clock.Now(), request: request,
		containers: map[string]containerDiskUsage{}}
	for name, n := range containers {
		u.total += n
		u.containers[name] = containerDiskUsage{used: n}
	}
	h.pods.usages = append(h.pods.usages, u)
}

func TestDiskPressureNoneBelowTheThreshold(t *testing.T) {
	h := newPressureHarness(t, "")
	h.info.StorageUsed, h.info.StorageAvailable = 80<<30, 20<<30 // 20% available
	h.measured("a", 0, 0, map[string]int64{"main": gi(1)})
	h.d.synchronize(context.Background())
	if h.pods.pressure || h.calls != 0 || len(h.pods.evicted) != 0 || len(h.events) != 0 {
		t.Errorf("pressure %v, image reclaims %d, evicted %v, events %v: want none", h.pods.pressure, h.calls, h.pods.evicted, h.events)
	}
}

func TestDiskPressureOffAtZeroPercent(t *testing.T) {
	h := newPressureHarness(t, "0%")
	h.info.StorageUsed, h.info.StorageAvailable = h.info.StorageTotal, 0
	h.d.synchronize(context.Background())
	if h.pods.pressure || h.calls != 0 {
		t.Errorf("pressure %v, image reclaims %d with availableBelow 0%%", h.pods.pressure, h.calls)
	}
}

// Images first: when removing the unused ones frees enough, no pod goes.
func TestDiskPressureImagesFirst(t *testing.T) {
	h := newPressureHarness(t, "")
	h.freed = gi(6) // 5 + 6 GiB available, above 10 GiB
	h.clock.Step(time.Second)
	h.measured("a", 0, 0, map[string]int64{"main": gi(1)})
	h.d.synchronize(context.Background())
	if !h.pods.pressure || h.calls != 1 {
		t.Fatalf("pressure %v, image reclaims %d: want true, 1", h.pods.pressure, h.calls)
	}
	if len(h.pods.evicted) != 0 {
		t.Errorf("evicted %v though the images freed enough", h.pods.evicted)
	}
}

// Not enough from the images: one pod, the kubelet's first in rank, with
// the kubelet's message; the next only once it has stopped and the host's
// figures were read again.
func TestDiskPressureEvictsOnePodAtATime(t *testing.T) {
	h := newPressureHarness(t, "")
	h.freed = gi(1)
	h.d.synchronize(context.Background()) // pressure begins: pods measure from now
	if len(h.pods.evicted) != 0 {
		t.Fatalf("evicted %v before any pod was measured", h.pods.evicted)
	}
	h.clock.Step(time.Second)
	h.measured("low-use", 0, 0, map[string]int64{"main": gi(1)})
	h.measured("high-use", 0, 0, map[string]int64{"main": gi(3), "side": gi(1)})
	h.measured("within-request", -10, gi(20), map[string]int64{"main": gi(10)})
	h.d.synchronize(context.Background())
	if len(h.pods.evicted) != 1 || h.pods.evicted[0] != "high-use" {
		t.Fatalf("evicted %v, want [high-use]", h.pods.evicted)
	}
	want := "The node was low on resource: ephemeral-storage. Threshold quantity: 10Gi, available: 5Gi. " +
		"Container main was using 3Gi, request is 0, has larger consumption of ephemeral-storage. " +
		"Container side was using 1Gi, request is 0, has larger consumption of ephemeral-storage. "
	if h.pods.messages[0] != want {
		t.Errorf("message\n%q\nwant\n%q", h.pods.messages[0], want)
	}
	if len(h.events) != 1 || h.events[0].reason != ReasonEvictionThresholdMet || h.events[0].typ != corev1.EventTypeWarning {
		t.Errorf("node events %v, want one EvictionThresholdMet warning", h.events)
	}

	// Still running: nothing more.
	h.d.synchronize(context.Background())
	// Stopped, but the figures are those read before.
	h.pods.ended["high-use"] = true
	h.d.synchronize(context.Background())
	if len(h.pods.evicted) != 1 {
		t.Fatalf("evicted %v before the first had stopped and the figures were read again", h.pods.evicted)
	}
	h.d.mu.Lock()
	h.d.seq++ // the host's facts read again
	h.d.mu.Unlock()
	h.d.synchronize(context.Background())
	if len(h.pods.evicted) != 2 || h.pods.evicted[1] != "low-use" {
		t.Fatalf("evicted %v, want [high-use low-use]", h.pods.evicted)
	}
	if got := h.d.Evictions(); got != 2 {
		t.Errorf("Evictions() = %d, want 2", got)
	}
}

// Measurements from before the pressure began do not rank pods: the one
// pod measured before is not evicted on them.
func TestDiskPressureRanksOnMeasurementsSinceItBegan(t *testing.T) {
	h := newPressureHarness(t, "")
	h.measured("stale", 0, 0, map[string]int64{"main": gi(50)})
	h.clock.Step(time.Second)
	h.d.synchronize(context.Background())
	if len(h.pods.evicted) != 0 {
		t.Errorf("evicted %v on a measurement from before the pressure", h.pods.evicted)
	}
}

func TestRankForDiskPressure(t *testing.T) {
	pods := []podDiskUsage{
		{name: "a/within-request-low-priority", priority: -5, total: gi(1), request: gi(2)},
		{name: "a/over-high-priority-big", priority: 1000, total: gi(9), request: gi(1)},
		{name: "a/over-low-priority-small", priority: 0, total: gi(2), request: gi(1)},
		{name: "a/over-low-priority-big", priority: 0, total: gi(5), request: gi(1)},
		{name: "a/within-request-high-priority", priority: 10, total: gi(1), request: gi(2)},
	}
	rankForDiskPressure(pods)
	var got []string
	for _, p := range pods {
		got = append(got, strings.TrimPrefix(p.name, "a/"))
	}
	want := []string{"over-low-priority-big", "over-low-priority-small", "over-high-priority-big",
		"within-request-low-priority", "within-request-high-priority"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("rank\n%v\nwant\n%v", got, want)
	}
}

func TestMeasuredUsage(t *testing.T) {
	pd := &corev1.Pod{}
	pd.Namespace, pd.Name, pd.UID = "ns", "p", "uid-1"
	pd.Spec.Priority = ptr.To[int32](7)
	pd.Spec.Containers = []corev1.Container{
		{Name: "main", Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceEphemeralStorage: resource.MustParse("1Gi")}}},
		{Name: "side"},
	}
	at := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	m := measuredUsage(pd, storageUsage{
		emptyDirs:  map[string]int64{"work": gi(4)},
		containers: map[string]int64{"main": gi(2), "side": 100},
	}, at)
	if m.uid != "uid-1" || m.name != "ns/p" || m.priority != 7 || !m.at.Equal(at) || m.total != gi(6)+100 || m.request != gi(1) {
		t.Errorf("measured %+v", m)
	}
	if c := m.containers["main"]; c.used != gi(2) || c.request != gi(1) {
		t.Errorf("main %+v", c)
	}
}

// The ended pods' containers go with the images, and no pod is evicted
// before the host's figures show what their removal gave back.
func TestDiskPressureReclaimsEndedPodsFirst(t *testing.T) {
	h := newPressureHarness(t, "")
	h.d.synchronize(context.Background()) // pressure begins
	h.clock.Step(time.Second)
	h.measured("running", 0, 0, map[string]int64{"main": gi(1)})
	h.pods.toReclaim = 2
	h.d.synchronize(context.Background())
	if len(h.pods.evicted) != 0 {
		t.Fatalf("evicted %v while ended pods' containers were being removed", h.pods.evicted)
	}
	h.d.synchronize(context.Background())
	if len(h.pods.evicted) != 0 {
		t.Fatalf("evicted %v on figures read before the ended pods' containers went", h.pods.evicted)
	}
	h.d.mu.Lock()
	h.d.seq++
	h.d.mu.Unlock()
	h.d.synchronize(context.Background())
	if len(h.pods.evicted) != 1 {
		t.Fatalf("evicted %v, want [running] once the figures still show pressure", h.pods.evicted)
	}
}
