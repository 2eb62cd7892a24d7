package provider

import (
	"slices"
	"testing"
	"time"

	"github.com/remote-build-nodes/rbn/internal/hostvolume"
)

func TestOrphanVolumes(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	entries := []hostvolume.Entry{
		{Name: "pvc-kept", Image: true, Modified: now.Add(-time.Hour)},
		{Name: "pvc-gone", Image: true, Modified: now.Add(-volumeSweepGrace)},
		{Name: "pvc-gone-plain", Modified: now.Add(-2 * volumeSweepGrace)},
		// Being made: the PersistentVolume is created after the files.
		{Name: "pvc-new", Image: true, Modified: now.Add(-volumeSweepGrace + time.Second)},
	}
	pvs := map[string]bool{"pvc-kept": true}
	known := func(name string) (bool, bool) { return pvs[name], true }
	got, ok := orphanVolumes(entries, known, now)
	if !ok {
		t.Fatal("orphanVolumes: not synced")
	}
	var names []string
	for _, e := range got {
		names = append(names, e.Name)
	}
	if want := []string{"pvc-gone", "pvc-gone-plain"}; !slices.Equal(names, want) {
		t.Fatalf("orphans %v, want %v", names, want)
	}
	// Before the cache of PersistentVolumes has listed, nothing is an
	// orphan: every volume would look like one.
	if got, ok := orphanVolumes(entries, func(string) (bool, bool) { return false, false }, now); ok || got != nil {
		t.Fatalf("orphanVolumes with an unsynced cache: %v, %v; want none, false", got, ok)
	}
}

func TestVolumeSpaceMoved(t *testing.T) {
	const gib = int64(1) << 30
	base := hostvolume.Space{Total: 100 * gib, Available: 50 * gib, Promised: 10 * gib, Volumes: 2}
	with := func(f func(*hostvolume.Space)) hostvolume.Space { s := base; f(&s); return s }
	for _, tc := range []struct {
		name  string
		now   hostvolume.Space
		known bool
		want  bool
	}{
		{"first reading", base, false, true},
		{"same", base, true, false},
		{"free space moved by less than 1%", with(func(s *hostvolume.Space) { s.Available -= gib - 1 }), true, false},
		{"free space moved by 1%", with(func(s *hostvolume.Space) { s.Available -= gib }), true, true},
		{"promised grew by 1%", with(func(s *hostvolume.Space) { s.Promised += gib }), true, true},
		{"a volume more", with(func(s *hostvolume.Space) { s.Volumes++ }), true, true},
		{"another file system", with(func(s *hostvolume.Space) { s.Total *= 2 }), true, true},
	} {
		if got := moved(base, tc.now, tc.known); got != tc.want {
			t.Errorf("%s: moved = %v, want %v", tc.name, got, tc.want)
		}
	}
}
