package callstats

import (
	"maps"
	"testing"
	"time"
)

func TestRecorder(t *testing.T) {
	var r Recorder
	if got := r.Snapshot(); len(got) != 0 {
		t.Fatalf("zero Recorder: %v", got)
	}
	r.Record("inspect", Success, time.Second)
	r.Record("inspect", NotFound, 2*time.Second)
	r.Record("inspect", Error, 3*time.Second)
	r.Record("inspect", Success, 4*time.Second)
	r.Record("create", Error, time.Millisecond)
	got := r.Snapshot()
	bucket := func(counts map[time.Duration]uint64) (b [len(Bounds)]uint64) {
		for i, bound := range Bounds {
			b[i] = counts[bound]
		}
		return b
	}
	want := map[string]Op{
		"inspect": {Calls: 4, Errors: 1, NotFound: 1, Duration: 10 * time.Second,
			Buckets: bucket(map[time.Duration]uint64{time.Second: 1, 2500 * time.Millisecond: 1, 5 * time.Second: 2})},
		"create": {Calls: 1, Errors: 1, Duration: time.Millisecond, Buckets: bucket(map[time.Duration]uint64{5 * time.Millisecond: 1})},
	}
	if !maps.Equal(got, want) {
		t.Errorf("Snapshot() = %v, want %v", got, want)
	}
	if n := got["inspect"].Succeeded(); n != 2 {
		t.Errorf("inspect succeeded %d, want 2", n)
	}
	// Cumulative, as Prometheus counts: at most 1 s: 1; at most 2.5 s: 2;
	// at most 5 s and beyond: 4.
	cum := got["inspect"].Cumulative()
	for i, bound := range Bounds {
		want := uint64(0)
		switch {
		case bound >= 5*time.Second:
			want = 4
		case bound >= 2500*time.Millisecond:
			want = 2
		case bound >= time.Second:
			want = 1
		}
		if cum[i] != want {
			t.Errorf("calls of at most %s: %d, want %d", bound, cum[i], want)
		}
	}
	// A call slower than the last bound counts in Calls only (+Inf).
	r.Record("pull", Success, 2*time.Minute)
	if p := r.Snapshot()["pull"]; p.Calls != 1 || p.Cumulative()[len(Bounds)-1] != 0 {
		t.Errorf("a 2-minute call: %+v, want counted beyond every bound", p)
	}
	// Two clients' totals add up, buckets too.
	if sum := got["inspect"].Add(got["inspect"]); sum.Calls != 8 || sum.Cumulative()[len(Bounds)-1] != 8 {
		t.Errorf("Add: %+v", sum)
	}
	// A snapshot is a copy: what follows does not change it.
	r.Record("create", Success, time.Millisecond)
	if got["create"].Calls != 1 {
		t.Errorf("snapshot changed by a later call: %v", got["create"])
	}
}
