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
	want := map[string]Op{
		"inspect": {Calls: 4, Errors: 1, NotFound: 1, Duration: 10 * time.Second},
		"create":  {Calls: 1, Errors: 1, Duration: time.Millisecond},
	}
	if !maps.Equal(got, want) {
		t.Errorf("Snapshot() = %v, want %v", got, want)
	}
	if n := got["inspect"].Succeeded(); n != 2 {
		t.Errorf("inspect succeeded %d, want 2", n)
	}
	// A snapshot is a copy: what follows does not change it.
	r.Record("create", Success, time.Millisecond)
	if got["create"].Calls != 1 {
		t.Errorf("snapshot changed by a later call: %v", got["create"])
	}
}
