package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/testwait"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// refreshPod mounts a ConfigMap's key whole and through a subPath, and a
// projected service account token of 600 s.
func refreshPod() *corev1.Pod {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: "/etc/config", ReadOnly: true},
		{Name: "config", MountPath: "/etc/key.conf", SubPath: "key", ReadOnly: true},
		{Name: "token", MountPath: "/var/run/secrets/tokens", ReadOnly: true},
	}
	pd.Spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}}},
		{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token", ExpirationSeconds: ptr.To[int64](600)}},
		}}}},
	}
	return pd
}

// tokens answers TokenRequests with token-1, token-2, ..., each living
// what was asked from the fake clock's now, or with fail when set.
type tokens struct {
	requests int
	fail     error
}

func refreshHarness(t *testing.T) (*harness, *tokens) {
	t.Helper()
	return refreshHarnessFor(t, refreshPod())
}

// refreshHarnessFor is refreshHarness with a pod of the test's own.
func refreshHarnessFor(t *testing.T, pd *corev1.Pod) (*harness, *tokens) {
	t.Helper()
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.setConfig("v1")
	tk := &tokens{}
	h.pods.cfg.Token = func(_ context.Context, _ *corev1.Pod, _ []string, exp int64) (string, time.Time, error) {
		if tk.fail != nil {
			return "", time.Time{}, tk.fail
		}
		tk.requests++
		return fmt.Sprintf("token-%d", tk.requests), h.clock.Now().Add(time.Duration(exp) * time.Second), nil
	}
	if r := h.sync(); r.finished {
		t.Fatalf("first sync: %+v", r)
	}
	h.wantPhase(corev1.PodRunning)
	return h, tk
}

func (h *harness) setConfig(value string) {
	h.t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns"}, Data: map[string]string{"key": value}}
	if err := h.objects.Update(cm); err != nil {
		h.t.Fatal(err)
	}
}

func mountpoint(volume string) string { return "/volumes/" + pod.VolumeName(testUID, volume) }

// dataDir is the data directory of content written at now.
func dataDir(now time.Time, files ...pod.File) string {
	return dataDirName(now, contentHash(testUID, files))
}

func (h *harness) wantFile(p, want string) {
	h.t.Helper()
	if got, ok := h.rt.read(p); !ok || got != want {
		h.t.Fatalf("%s holds %q (found %t), want %q; volume: %q", p, got, ok, want, h.rt.listing(path0(p)))
	}
}

func path0(p string) string { return p[:strings.LastIndexByte(p, '/')] }

// callCount is how many runtime calls were made so far.
func (h *harness) callCount() int {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	return len(h.rt.calls)
}

// wantNoVolumeWrites fails on any write to a volume (or refresh container)
// among the runtime calls made since the first before.
func (h *harness) wantNoVolumeWrites(before int, why string) {
	h.t.Helper()
	h.rt.mu.Lock()
	after := slices.Clone(h.rt.calls[before:])
	h.rt.mu.Unlock()
	for _, c := range after {
		for _, write := range []string{"copy-into", "extract-tar", "rename", "remove-paths", "create rbn-" + testUID + "-refresh"} {
			if strings.HasPrefix(c, write) {
				h.t.Errorf("%q %s; calls %q", c, why, after)
			}
		}
	}
}

// callIndex is the position of the first call starting with prefix, -1 if none.
func (h *harness) callIndex(prefix string) int {
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	return slices.IndexFunc(h.rt.calls, func(c string) bool { return strings.HasPrefix(c, prefix) })
}

func TestFilesVolumeLayoutAfterFirstFill(t *testing.T) {
	h, _ := refreshHarness(t)
	start := h.clock.Now()
	mp := mountpoint("config")
	dir := dataDir(start, pod.File{Path: "key", Data: []byte("v1"), Mode: 0o644})
	want := []string{dir + "/", dir + "/key=v1", "..data -> " + dir, "key -> ..data/key"}
	if got := h.rt.listing(mp); !slices.Equal(got, want) {
		t.Errorf("config volume:\n%q\nwant\n%q", got, want)
	}
	// Mounted whole only, the token volume is written on the host while
	// the pod is created, before its container starts.
	tdir := dataDir(start, pod.File{Path: "token", Data: []byte("token-1"), Mode: 0o644})
	want = []string{tdir + "/", tdir + "/token=token-1", "..data -> " + tdir, "token -> ..data/token"}
	if got := h.rt.listing(mountpoint("token")); !slices.Equal(got, want) {
		t.Errorf("token volume:\n%q\nwant\n%q", got, want)
	}
	h.wantCalls("extract-tar "+mountpoint("token"), 1)
	h.wantCalls("copy-into "+ctrName("main", 0), 0)
	if w, s := h.callIndex("extract-tar "), h.callIndex("start "+ctrName("main", 0)); w > s {
		t.Errorf("the token volume was written (call %d) after the container started (call %d)", w, s)
	}
	// The subPath mount binds the file in the data directory.
	if src := mountSource(t, h, ctrName("main", 0), "/etc/key.conf"); src != mp+"/"+dir+"/key" {
		t.Errorf("subPath mount source %s, want the file in %s", src, dir)
	}
}

func mountSource(t *testing.T, h *harness, ctr, dest string) string {
	t.Helper()
	h.rt.mu.Lock()
	defer h.rt.mu.Unlock()
	for _, m := range h.rt.specs[ctr].Mounts {
		if m.Destination == dest {
			return m.Source
		}
	}
	t.Fatalf("container %s mounts nothing at %s", ctr, dest)
	return ""
}

// A volume the host could not write is copied through the container
// before it starts, with the archive the host was given: the same data
// directory over whatever part of it the host wrote.
func TestFilesVolumeHostFillFailureCopiedThroughPodman(t *testing.T) {
	pd := refreshPod()
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.setConfig("v1")
	h.pods.cfg.Token = func(_ context.Context, _ *corev1.Pod, _ []string, exp int64) (string, time.Time, error) {
		return "token-1", h.clock.Now().Add(time.Duration(exp) * time.Second), nil
	}
	h.rt.faults = map[string][]error{"extract-tar": {errors.New("bash: line 1: tar: command not found")}}
	start := h.clock.Now()
	h.rt.onCall = func(call string) {
		if strings.HasPrefix(call, "create rbn-") {
			h.clock.Step(time.Second) // a fresh archive would name another data directory
		}
	}
	h.sync()
	h.wantPhase(corev1.PodRunning)
	h.wantCalls("copy-into "+ctrName("main", 0)+" /var/run/secrets/tokens", 1)
	tdir := dataDir(start, pod.File{Path: "token", Data: []byte("token-1"), Mode: 0o644})
	want := []string{tdir + "/", tdir + "/token=token-1", "..data -> " + tdir, "token -> ..data/token"}
	if got := h.rt.listing(mountpoint("token")); !slices.Equal(got, want) {
		t.Errorf("token volume:\n%q\nwant\n%q", got, want)
	}
	if c, s := h.callIndex("copy-into "+ctrName("main", 0)), h.callIndex("start "+ctrName("main", 0)); c > s {
		t.Errorf("copied (call %d) after the container started (call %d)", c, s)
	}
}

// A podman pod found on the host (a previous rbn-kubelet's, or an earlier
// attempt's) may have had containers: its volumes are never written with
// tar on the host, which follows what a directory holds, even one found
// empty.
func TestFilesVolumeNotWrittenOnHostForAnExistingPodmanPod(t *testing.T) {
	h, _ := refreshHarness(t)
	h.rt.mu.Lock()
	for p := range h.rt.tree {
		if strings.HasPrefix(p, mountpoint("token")+"/") {
			delete(h.rt.tree, p)
		}
	}
	h.rt.mu.Unlock()
	h2 := restarted(t, h, refreshPod())
	h2.pods.cfg.Token = h.pods.cfg.Token
	h2.setConfig("v1")
	before := h.callCount()
	h2.sync()
	h2.wantPhase(corev1.PodRunning)
	h.rt.mu.Lock()
	after := slices.Clone(h.rt.calls[before:])
	h.rt.mu.Unlock()
	if !slices.Contains(after, "list-dirs "+mountpoint("config")+" "+mountpoint("token")) {
		t.Fatalf("the adopting process did not look at the volumes; calls %q", after)
	}
	for _, c := range after {
		if strings.HasPrefix(c, "extract-tar") {
			t.Errorf("%q into the volume of a podman pod that existed; calls %q", c, after)
		}
	}
}

func TestFilesVolumeUpdateSwapsData(t *testing.T) {
	h, _ := refreshHarness(t)
	mp := mountpoint("config")
	oldDir := dataDir(h.clock.Now(), pod.File{Path: "key", Data: []byte("v1"), Mode: 0o644})
	h.setConfig("v2")
	// Not before the periodic resync (a minute at least).
	h.clock.Step(59 * time.Second)
	h.sync()
	h.wantFile(mp+"/key", "v1")
	h.wantCalls("rename ", 0)

	// Past a minute and a half: due whatever the jitter. The worker wakes
	// for it between syncs.
	h.clock.Step(31 * time.Second)
	if h.w.refreshAt.IsZero() || h.w.refreshAt.After(h.clock.Now()) {
		t.Fatalf("refresh due at %v, want by %v", h.w.refreshAt, h.clock.Now())
	}
	h.w.refreshBetweenSyncs(h.ctx)
	newDir := dataDir(h.clock.Now(), pod.File{Path: "key", Data: []byte("v2"), Mode: 0o644})
	h.wantFile(mp+"/key", "v2")
	want := []string{newDir + "/", newDir + "/key=v2", "..data -> " + newDir, "key -> ..data/key"}
	if got := h.rt.listing(mp); !slices.Equal(got, want) {
		t.Errorf("config volume after the update:\n%q\nwant\n%q", got, want)
	}
	write := h.callIndex("copy-into rbn-" + testUID + "-refresh " + loaderRoot + "/config")
	swap := h.callIndex("rename " + mp + "/..data_tmp " + mp + "/..data")
	clean := h.callIndex("remove-paths " + mp + "/" + oldDir)
	if write < 0 || swap < 0 || clean < 0 || !(write < swap && swap < clean) {
		t.Errorf("new data written at call %d, ..data swapped at %d, old data removed at %d: want them in that order; calls %q", write, swap, clean, h.rt.calls)
	}
	// Only the config volume changed; the refresh container is gone.
	h.wantCalls("rename ", 1)
	h.wantCalls("remove rbn-"+testUID+"-refresh", 1)
	// The running container's subPath mount keeps the file it started with.
	if src := mountSource(t, h, ctrName("main", 0), "/etc/key.conf"); src != mp+"/"+oldDir+"/key" {
		t.Errorf("subPath mount source %s changed", src)
	}
	if d := h.w.refreshAt.Sub(h.clock.Now()); d <= 0 || d > 90*time.Second {
		t.Errorf("next refresh in %v, want within 90s", d)
	}
}

func TestFilesVolumeUnchangedWritesNothing(t *testing.T) {
	h, _ := refreshHarness(t)
	before := h.callCount()
	for range 3 {
		h.clock.Step(91 * time.Second)
		h.sync()
	}
	h.wantNoVolumeWrites(before, "with nothing changed")
}

// The worker's wake-ups for its volumes between syncs look at no container
// when nothing changed: a running pod with a service account token (all of
// them, by default) woke a sync every minute, a list and an inspect per
// container each, most of an idle host's podman calls at hundreds of pods.
func TestFilesVolumeRefreshBetweenSyncsLooksAtNoContainer(t *testing.T) {
	h, _ := refreshHarness(t)
	before, looks := h.callCount(), h.rt.lookCount()
	for range 3 {
		h.clock.Step(h.w.refreshAt.Sub(h.clock.Now()))
		h.w.refreshBetweenSyncs(h.ctx)
		if !h.w.refreshAt.After(h.clock.Now()) {
			t.Fatalf("next refresh at %v, want after %v", h.w.refreshAt, h.clock.Now())
		}
	}
	if n := h.rt.lookCount() - looks; n != 0 {
		t.Errorf("3 refreshes between syncs listed or inspected containers %d times, want none", n)
	}
	h.wantNoVolumeWrites(before, "with nothing changed")
	// An ended pod's volumes are not refreshed: the wake-ups stop.
	h.w.mu.Lock()
	h.w.pod.Status.Phase = corev1.PodSucceeded
	h.w.mu.Unlock()
	h.w.refreshBetweenSyncs(h.ctx)
	if !h.w.refreshAt.IsZero() {
		t.Errorf("an ended pod's next refresh at %v, want none", h.w.refreshAt)
	}
}

// A worker waiting for a kick refreshes its volumes when due and waits on:
// the refresh is no sync.
func TestAwaitRefreshesWithoutSyncing(t *testing.T) {
	h, _ := refreshHarness(t)
	h.setConfig("v2")
	due := h.w.refreshAt
	woke := make(chan bool, 1)
	go func() { woke <- h.w.await(h.ctx, 0) }()
	testwait.Eventually(t, "the worker waiting for its refresh", h.clock.HasWaiters)
	h.clock.Step(due.Sub(h.clock.Now()))
	testwait.Eventually(t, "the changed volume written by the refresh, and the worker waiting again", func() bool {
		h.rt.mu.Lock()
		swapped := slices.ContainsFunc(h.rt.calls, func(c string) bool { return strings.HasPrefix(c, "rename ") })
		h.rt.mu.Unlock()
		return swapped && h.clock.HasWaiters()
	})
	select {
	case <-woke:
		t.Fatal("the worker left await for a refresh: a sync would follow")
	default:
	}
	h.w.poke()
	if !<-woke {
		t.Fatal("await ended without the kick")
	}
	h.wantFile(mountpoint("config")+"/key", "v2")
	if !h.w.refreshAt.After(due) {
		t.Errorf("next refresh at %v, want after the one done (%v)", h.w.refreshAt, due)
	}
}

func TestTokenRefreshedAtEightyPercent(t *testing.T) {
	h, tk := refreshHarness(t)
	start := h.clock.Now()
	mp := mountpoint("token")
	// Resyncs until just before 80% of 600 s do not ask for a token.
	for h.clock.Since(start) < 479*time.Second {
		h.clock.Step(min(60*time.Second, 479*time.Second-h.clock.Since(start)))
		h.sync()
	}
	if tk.requests != 1 {
		t.Fatalf("%d TokenRequests before 80%% of the token's life, want 1", tk.requests)
	}
	h.wantFile(mp+"/token", "token-1")
	if d := h.w.refreshAt.Sub(h.clock.Now()); d <= 0 || d > time.Second {
		t.Fatalf("at 479s the next refresh is in %v, want at 480s", d)
	}
	h.clock.Step(time.Second)
	h.sync()
	if tk.requests != 2 {
		t.Fatalf("%d TokenRequests at 80%% of the token's life, want 2", tk.requests)
	}
	h.wantFile(mp+"/token", "token-2")
	h.wantCalls("rename "+mp+"/..data_tmp", 1)
}

func TestTokenRefreshFailureRetriedWithEvent(t *testing.T) {
	h, tk := refreshHarness(t)
	mp := mountpoint("token")
	h.events()
	tk.fail = errors.New("serviceaccounts \"default\" is forbidden")
	h.clock.Step(480 * time.Second)
	h.sync()
	h.wantEvent(h.events(), `Warning FailedMount MountVolume.SetUp failed for volume "token": failed to fetch token`)
	h.wantPhase(corev1.PodRunning)
	h.wantFile(mp+"/token", "token-1")
	if d := h.w.refreshAt.Sub(h.clock.Now()); d != h.pods.cfg.Retry.Config {
		t.Errorf("next refresh in %v, want the retry in %v", d, h.pods.cfg.Retry.Config)
	}
	// The same failure is reported once.
	h.clock.Step(h.pods.cfg.Retry.Config)
	h.sync()
	if ev := h.events(); len(ev) != 0 {
		t.Errorf("events for the same failure again: %q", ev)
	}
	tk.fail = nil
	h.clock.Step(h.pods.cfg.Retry.Config)
	h.sync()
	h.wantFile(mp+"/token", "token-2")
}

// A Secret or ConfigMap deleted from under a running pod: the volume keeps
// its last content, as on a kubelet.
func TestFilesVolumeKeepsContentOfDeletedConfigMap(t *testing.T) {
	h, _ := refreshHarness(t)
	if err := h.objects.Delete(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns"}}); err != nil {
		t.Fatal(err)
	}
	h.events()
	h.clock.Step(91 * time.Second)
	h.sync()
	h.wantFile(mountpoint("config")+"/key", "v1")
	h.wantEvent(h.events(), `Warning FailedMount MountVolume.SetUp failed for volume "config"`)
	h.wantPhase(corev1.PodRunning)
}

// An optional ConfigMap deleted later empties its volume, as kubelet
// writes an optional source that is missing.
func TestFilesVolumeOptionalConfigMapDeleted(t *testing.T) {
	pd := refreshPod()
	pd.Spec.Volumes[0].ConfigMap.Optional = ptr.To(true)
	pd.Spec.Containers[0].VolumeMounts = slices.Delete(pd.Spec.Containers[0].VolumeMounts, 1, 2) // no subPath of a key that may go
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.setConfig("v1")
	h.pods.cfg.Token = func(context.Context, *corev1.Pod, []string, int64) (string, time.Time, error) {
		return "t", time.Time{}, nil
	}
	h.sync()
	h.wantFile(mountpoint("config")+"/key", "v1")
	if err := h.objects.Delete(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: "ns"}}); err != nil {
		t.Fatal(err)
	}
	h.clock.Step(91 * time.Second)
	h.sync()
	dir := dataDir(h.clock.Now())
	want := []string{dir + "/", "..data -> " + dir}
	if got := h.rt.listing(mountpoint("config")); !slices.Equal(got, want) {
		t.Errorf("config volume once its optional ConfigMap is gone:\n%q\nwant\n%q", got, want)
	}
}

// A restarted rbn-kubelet adopts the pod: it learns the volumes with one
// listing, rewrites none that holds what the pod asks for, and keeps
// refreshing.
func TestAdoptedPodVolumesNotRewritten(t *testing.T) {
	h, _ := refreshHarness(t)
	h2 := restarted(t, h, refreshPod())
	h2.pods.cfg.Token = h.pods.cfg.Token
	h2.setConfig("v1")
	h.rt.mu.Lock()
	before := len(h.rt.calls)
	h.rt.mu.Unlock()
	h2.sync()
	h2.wantPhase(corev1.PodRunning)
	h.rt.mu.Lock()
	after := slices.Clone(h.rt.calls[before:])
	h.rt.mu.Unlock()
	cfg := mountpoint("config")
	for _, c := range after {
		if strings.Contains(c, cfg) && !strings.HasPrefix(c, "list-dirs") || strings.HasPrefix(c, "copy-into "+ctrName("main", 0)) || strings.HasPrefix(c, "extract-tar") {
			t.Errorf("adoption wrote %q; calls %q", c, after)
		}
	}
	// The new process's token is new content: written with a swap.
	h2.wantFile(mountpoint("token")+"/token", "token-2")
	h2.wantCalls("rename "+mountpoint("token")+"/..data_tmp", 1)
	h2.setConfig("v3")
	h2.clock.Step(91 * time.Second)
	h2.sync()
	h2.wantFile(cfg+"/key", "v3")
}

// A pod whose containers ended before a takeover: the new process reports
// it complete at its first sync, without writing its volumes first (its
// new token would be new content, a container run on the host; and no
// container reads them any more).
func TestAdoptedEndedPodReportedWithoutVolumeWrites(t *testing.T) {
	pd := refreshPod()
	pd.Spec.RestartPolicy = corev1.RestartPolicyNever
	h, _ := refreshHarnessFor(t, pd)
	h.rt.exit(ctrName("main", 0), 0)
	h2 := restarted(t, h, pd)
	h2.pods.cfg.Token = h.pods.cfg.Token
	h2.setConfig("v2") // changed too: still not written
	before := h.callCount()
	h2.sync()
	h2.wantPhase(corev1.PodSucceeded)
	if h2.final == nil {
		t.Fatal("the completed pod was not reported")
	}
	h.wantNoVolumeWrites(before, "for a completed pod")
}

func TestPodTokenRefreshAt(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ttl, want time.Duration
	}{
		{10 * time.Minute, 8 * time.Minute},
		{time.Hour, 48 * time.Minute},
		{48 * time.Hour, 24 * time.Hour}, // never older than a day
	} {
		tok := podToken{value: "t", issued: t0, expires: t0.Add(tc.ttl)}
		if got := tok.refreshAt().Sub(t0); got != tc.want {
			t.Errorf("ttl %v: refresh after %v, want %v", tc.ttl, got, tc.want)
		}
	}
}

func TestParseDirEntries(t *testing.T) {
	out := []byte("/v\x00..data\x00..2026_01_01_00_00_00.ab\x00/v\x00key\x00..data/key\x00/v\x00..2026_01_01_00_00_00.ab\x00\x00")
	got, err := parseDirEntries(out)
	want := []DirEntry{{"/v", "..data", "..2026_01_01_00_00_00.ab"}, {"/v", "key", "..data/key"}, {"/v", "..2026_01_01_00_00_00.ab", ""}}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("parseDirEntries = %q, %v; want %q", got, err, want)
	}
	if got, err := parseDirEntries(nil); err != nil || len(got) != 0 {
		t.Errorf("parseDirEntries(empty) = %q, %v", got, err)
	}
	if _, err := parseDirEntries([]byte("/v\x00x\x00")); err == nil {
		t.Error("parseDirEntries took a broken listing")
	}
}
