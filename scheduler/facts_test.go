package scheduler

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

func TestResolve(t *testing.T) {
	fresh := healthy(10*Gi, "localhost/rbn/busybox:1.0")
	fresh.RunningPods, fresh.RecentFailures, fresh.TmpFreeBytes, fresh.VolumeFreeBytes = 3, 1, 5*Gi, 4*Gi
	stale := fresh
	stale.ObservedAt = metav1.NewTime(now.Add(-3 * time.Minute))
	staleSick := stale
	staleSick.Healthy = false

	tests := []struct {
		name  string
		opts  []func(*corev1.Node)
		check func(t *testing.T, f Facts)
	}{
		{
			name: "no facts: everything unknown",
			check: func(t *testing.T, f Facts) {
				if f.Healthy.Known || f.StorageFreeBytes.Known || f.Images.Known || f.RunningPods.Known || f.Stale {
					t.Errorf("facts known without annotation: %+v", f)
				}
			},
		},
		{
			name: "fresh facts: everything known",
			opts: []func(*corev1.Node){facts(fresh)},
			check: func(t *testing.T, f Facts) {
				if !f.Healthy.Value || f.StorageFreeBytes.Value != 10*Gi || f.TmpFreeBytes.Value != 5*Gi || f.VolumeFreeBytes.Value != 4*Gi ||
					f.RunningPods.Value != 3 || f.RecentFailures.Value != 1 || !f.Images.Value.Has("localhost/rbn/busybox:1.0") {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "tmpFreeBytes -1 is unknown",
			opts: []func(*corev1.Node){facts(healthy(Gi))},
			check: func(t *testing.T, f Facts) {
				if f.TmpFreeBytes.Known {
					t.Errorf("tmp known: %+v", f.TmpFreeBytes)
				}
			},
		},
		{
			name: "volumeFreeBytes -1 is unknown",
			opts: []func(*corev1.Node){facts(healthy(Gi))},
			check: func(t *testing.T, f Facts) {
				if f.VolumeFreeBytes.Known {
					t.Errorf("volume space known: %+v", f.VolumeFreeBytes)
				}
			},
		},
		{
			// An rbn-kubelet older than the field: its absence is not "0 bytes free".
			name: "volumeFreeBytes absent is unknown",
			opts: []func(*corev1.Node){published(`{"observedAt":"2026-05-01T12:00:00Z","healthy":true,"storageFreeBytes":1073741824,"tmpFreeBytes":-1}`)},
			check: func(t *testing.T, f Facts) {
				if f.VolumeFreeBytes.Known || !f.StorageFreeBytes.Known {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "volumeFreeBytes null is unknown",
			opts: []func(*corev1.Node){published(`{"observedAt":"2026-05-01T12:00:00Z","healthy":true,"volumeFreeBytes":null}`)},
			check: func(t *testing.T, f Facts) {
				if f.VolumeFreeBytes.Known {
					t.Errorf("volume space known: %+v", f.VolumeFreeBytes)
				}
			},
		},
		{
			name: "volumeFreeBytes 0 is known",
			opts: []func(*corev1.Node){published(`{"observedAt":"2026-05-01T12:00:00Z","healthy":true,"volumeFreeBytes":0}`)},
			check: func(t *testing.T, f Facts) {
				if !f.VolumeFreeBytes.Known || f.VolumeFreeBytes.Value != 0 {
					t.Errorf("volume space: %+v", f.VolumeFreeBytes)
				}
			},
		},
		{
			name: "stale healthy facts: all unknown",
			opts: []func(*corev1.Node){facts(stale)},
			check: func(t *testing.T, f Facts) {
				if !f.Stale || f.Healthy.Known || f.StorageFreeBytes.Known || f.VolumeFreeBytes.Known || f.Images.Known || f.RunningPods.Known {
					t.Errorf("stale facts used: %+v", f)
				}
			},
		},
		{
			name: "stale unhealthy stays unhealthy",
			opts: []func(*corev1.Node){facts(staleSick)},
			check: func(t *testing.T, f Facts) {
				if !f.Healthy.Known || f.Healthy.Value || f.StorageFreeBytes.Known {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "override without published facts never goes stale",
			opts: []func(*corev1.Node){override(`{"storageFreeBytes": 1024, "images": ["busybox"]}`)},
			check: func(t *testing.T, f Facts) {
				if f.StorageFreeBytes.Value != 1024 || !f.Images.Value.Has("docker.io/library/busybox:latest") || f.Healthy.Known {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "override over stale facts applies, the rest stays unknown",
			opts: []func(*corev1.Node){facts(stale), override(`{"healthy": true}`)},
			check: func(t *testing.T, f Facts) {
				if !f.Healthy.Value || f.StorageFreeBytes.Known {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "override sets volume space over stale facts",
			opts: []func(*corev1.Node){facts(stale), override(`{"volumeFreeBytes": 1048576}`)},
			check: func(t *testing.T, f Facts) {
				if !f.VolumeFreeBytes.Known || f.VolumeFreeBytes.Value != Mi || f.StorageFreeBytes.Known {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "override of volume space: null forgets, negative is unknown",
			opts: []func(*corev1.Node){facts(fresh), override(`{"volumeFreeBytes": null, "tmpFreeBytes": -1}`)},
			check: func(t *testing.T, f Facts) {
				if f.VolumeFreeBytes.Known || f.TmpFreeBytes.Known || f.StorageFreeBytes.Value != 10*Gi {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "override of volume space below 0 is unknown",
			opts: []func(*corev1.Node){facts(fresh), override(`{"volumeFreeBytes": -1}`)},
			check: func(t *testing.T, f Facts) {
				if f.VolumeFreeBytes.Known {
					t.Errorf("volume space known: %+v", f.VolumeFreeBytes)
				}
			},
		},
		{
			name: "override merges over fresh facts; null forgets",
			opts: []func(*corev1.Node){facts(fresh), override(`{"storageFreeBytes": 7, "runningPods": null}`)},
			check: func(t *testing.T, f Facts) {
				if f.StorageFreeBytes.Value != 7 || f.RunningPods.Known || f.RecentFailures.Value != 1 || !f.Healthy.Value {
					t.Errorf("facts = %+v", f)
				}
			},
		},
		{
			name: "facts from the future are fresh",
			opts: []func(*corev1.Node){facts(rbnv1.HostFacts{ObservedAt: metav1.NewTime(now.Add(time.Minute)), Healthy: true, StorageFreeBytes: 1})},
			check: func(t *testing.T, f Facts) {
				if !f.StorageFreeBytes.Known {
					t.Errorf("facts = %+v", f)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := NewNodeInfo(node("h", tt.opts...))
			if info.PublishedErr != nil || info.OverrideErr != nil {
				t.Fatal(info.PublishedErr, info.OverrideErr)
			}
			tt.check(t, info.Facts(now, 2*time.Minute))
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, published, override string
		want                      []string
	}{
		{name: "published not JSON", published: "{", want: []string{"rbn.dev/host-facts"}},
		{name: "published without observedAt", published: `{"healthy": true}`, want: []string{"observedAt is missing"}},
		{name: "override not an object", override: `[1]`, want: []string{"must be a JSON object"}},
		{name: "override null", override: `null`, want: []string{"not null"}},
		{name: "override: volumeFreeBytes as a quantity", override: `{"volumeFreeBytes": "1Gi"}`, want: []string{"volumeFreeBytes: json"}},
		{
			name:     "override: every problem",
			override: `{"storageFreBytes": 1, "healthy": "yes", "observedAt": "2026-01-01T00:00:00Z"}`,
			want:     []string{"storageFreBytes: unknown field", "healthy: json", "observedAt: cannot be overridden"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []func(*corev1.Node)
			if tc.published != "" {
				opts = append(opts, func(n *corev1.Node) { n.Annotations[rbnv1.AnnotationHostFacts] = tc.published })
			}
			if tc.override != "" {
				opts = append(opts, override(tc.override))
			}
			info := NewNodeInfo(node("h", opts...))
			err := info.PublishedErr
			if tc.override != "" {
				err = info.OverrideErr
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNonRBNNodeIgnoresAnnotations(t *testing.T) {
	info := NewNodeInfo(node("plain", notRBN, override("garbage")))
	if info.RemoteBuildNode || info.OverrideErr != nil || info.Override != nil {
		t.Errorf("info = %+v", info)
	}
}
