package scheduler

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

func TestFilterNode(t *testing.T) {
	const img = "localhost/rbn/busybox:1.0"
	pod := PodNeeds{EphemeralBytes: 2 * Gi, Images: []string{img}}
	sick := healthy(100 * Gi)
	sick.Healthy = false
	staleSick := sick
	staleSick.ObservedAt = metav1.NewTime(now.Add(-10 * time.Minute))
	staleLow := healthy(Gi)
	staleLow.ObservedAt = metav1.NewTime(now.Add(-3 * time.Minute))
	failing := healthy(100 * Gi)
	failing.RecentFailures = 5
	lowTmp := healthy(100*Gi, "other:1")
	lowTmp.TmpFreeBytes = 500 * Mi
	volumes := func(free int64) rbnv1.HostFacts { f := healthy(100*Gi, img); f.VolumeFreeBytes = free; return f }
	staleVolumes := volumes(Gi)
	staleVolumes.ObservedAt = metav1.NewTime(now.Add(-3 * time.Minute))
	claims2Gi := &PodNeeds{Images: []string{img}, VolumeBytes: 2 * Gi}
	withImages := func(p Policy) Policy { p.DefaultImageSizeBytes = Gi; return p }
	withFailLimit := func(p Policy) Policy { p.RecentFailuresLimit = 5; return p }

	tests := []struct {
		name   string
		node   *corev1.Node
		pod    *PodNeeds
		policy func(Policy) Policy
		// want is "" for pass, else substrings of the reason.
		want []string
	}{
		{name: "not a build host: passes whatever it says", node: node("plain", notRBN, draining, facts(sick))},
		{name: "build host without facts passes", node: node("h")},
		{name: "enough disk", node: node("h", facts(healthy(2*Gi)))},
		{name: "draining", node: node("h", draining, facts(healthy(100*Gi))), want: []string{"draining", "rbn.dev/draining=true"}},
		{name: "unhealthy", node: node("h", facts(sick)), want: []string{"fails its health checks"}},
		{name: "stale unhealthy", node: node("h", facts(staleSick)), want: []string{"has not reported since"}},
		{name: "stale low disk is unknown: passes", node: node("h", facts(staleLow))},
		{
			name: "not enough disk for ephemeral-storage",
			node: node("h", facts(healthy(2*Gi-1, img))),
			want: []string{"podman storage has 2.0GiB free, the pod needs 2.0GiB (ephemeral-storage 2.0GiB)"},
		},
		{
			name:   "image to pull counts at the default size",
			node:   node("h", facts(healthy(2*Gi+Gi/2))),
			policy: withImages,
			want:   []string{"needs 3.0GiB", "1 image(s) to pull at 1.0GiB each"},
		},
		{name: "image present: no pull to count", node: node("h", facts(healthy(2*Gi+Gi/2, img))), policy: withImages},
		{name: "no declared need: passes even with no space", node: node("h", facts(healthy(0))), pod: &PodNeeds{Images: []string{img}}},
		{
			name:   "temp area too small for the pull",
			node:   node("h", facts(lowTmp)),
			policy: withImages,
			want:   []string{"temp area has 500.0MiB free", "needs 1.0GiB"},
		},
		{name: "recent failures off by default", node: node("h", facts(failing))},
		{name: "recent failures at the limit", node: node("h", facts(failing)), policy: withFailLimit, want: []string{"5 host-caused pod failures", "limit 5"}},
		{
			name: "override lowers free disk over published facts",
			node: node("h", facts(healthy(100*Gi, img)), override(`{"storageFreeBytes": 1073741824}`)),
			want: []string{"podman storage has 1.0GiB free"},
		},
		{name: "override marks healthy", node: node("h", facts(sick), override(`{"healthy": true}`))},
		{
			name: "volume space below the claims' need",
			node: node("h", facts(volumes(Gi))),
			pod:  claims2Gi,
			want: []string{"rbn: build host has 1.0GiB free for volumes, the pod's unbound claims of rbn.dev/host-local ask for 2.0GiB"},
		},
		{name: "volume space exactly the claims' need", node: node("h", facts(volumes(2*Gi))), pod: claims2Gi},
		{name: "volume space unknown (-1): passes", node: node("h", facts(volumes(-1))), pod: claims2Gi},
		{
			name: "volume space absent (older rbn-kubelet): passes",
			node: node("h", published(`{"observedAt":"2026-05-01T12:00:00Z","healthy":true,"storageFreeBytes":1,"tmpFreeBytes":-1}`)),
			pod:  claims2Gi,
		},
		{name: "stale volume space is unknown: passes", node: node("h", facts(staleVolumes)), pod: claims2Gi},
		{name: "no unbound claims: passes with no volume space", node: node("h", facts(volumes(0))), pod: &PodNeeds{Images: []string{img}}},
		{
			name: "override lowers volume space",
			node: node("h", facts(volumes(100*Gi)), override(`{"volumeFreeBytes": 1048576}`)),
			pod:  claims2Gi,
			want: []string{"has 1.0MiB free for volumes", "ask for 2.0GiB"},
		},
		{
			name: "podman storage is checked first",
			node: node("h", facts(healthy(Gi, img)), override(`{"volumeFreeBytes": 0}`)),
			pod:  &PodNeeds{EphemeralBytes: 2 * Gi, Images: []string{img}, VolumeBytes: Gi},
			want: []string{"podman storage has 1.0GiB free"},
		},
		{name: "unusable override", node: node("h", facts(healthy(100*Gi)), override(`{"healthy": 1}`)), want: []string{"unusable rbn.dev/host-facts-override", "healthy"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPolicy
			if tt.policy != nil {
				p = tt.policy(p)
			}
			pn := pod
			if tt.pod != nil {
				pn = *tt.pod
			}
			v := view(tt.node, 0)
			reason, ok := FilterNode(pn, &v, now, p)
			if len(tt.want) == 0 {
				if !ok {
					t.Errorf("filtered out: %s", reason)
				}
				return
			}
			if ok {
				t.Fatalf("passed, want a reason with %q", tt.want)
			}
			if !strings.HasPrefix(reason, "rbn: ") {
				t.Errorf("reason %q does not say it is rbn's", reason)
			}
			for _, w := range tt.want {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q lacks %q", reason, w)
				}
			}
		})
	}
}

func TestFilterKeepsOrderAndUnknownNodes(t *testing.T) {
	nodes := []NodeView{
		view(node("a", facts(healthy(100*Gi))), 0),
		view(node("b", draining), 0),
		{Name: "unknown-to-the-cache"},
		view(node("c", notRBN), 0),
	}
	r := Filter(PodNeeds{}, nodes, now, testPolicy)
	if strings.Join(r.Passed, ",") != "a,unknown-to-the-cache,c" || len(r.Failed) != 1 || r.Failed["b"] == "" {
		t.Errorf("Filter = %+v", r)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536 * Mi: "1.5GiB", 3 << 40: "3.0TiB", -2048: "-2.0KiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %s, want %s", n, got, want)
		}
	}
}
