package probe

import (
	"context"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	testingclock "k8s.io/utils/clock/testing"
)

// timed is a scripted target whose execs take the time set for them on
// the harness's fake clock.
type timed struct {
	scripted
	mu    sync.Mutex
	clock *testingclock.FakeClock
	took  time.Duration
}

func (t *timed) Exec(ctx context.Context, id string, cmd []string, out io.Writer) (int, error) {
	t.mu.Lock()
	clk, d := t.clock, t.took
	t.mu.Unlock()
	if clk != nil {
		clk.Step(d)
	}
	return t.scripted.Exec(ctx, id, cmd, out)
}

func (t *timed) setTook(d time.Duration) {
	t.mu.Lock()
	t.took = d
	t.mu.Unlock()
}

// Each attempt whose outcome is known is counted as kubelet's
// prober_probe_total counts it, successes with their durations (retries
// included); errored attempts are not.
func TestWorkerStats(t *testing.T) {
	target := &timed{}
	st := &Stats{}
	// The initial delay holds the first attempt until the target has the clock.
	h := startWorker(t, target, Config{Kind: Readiness, Probe: execProbe(corev1.Probe{InitialDelaySeconds: 1, PeriodSeconds: 10}), Stats: st})
	target.mu.Lock()
	target.clock = h.clock
	target.mu.Unlock()
	for i, a := range []struct {
		r    reply
		took time.Duration
	}{
		{ok, 3 * time.Millisecond},
		{ok, 30 * time.Millisecond},
		{bad, time.Second},             // failed: no duration
		{gone, 500 * time.Millisecond}, // errored, thrice: not counted
		{ok, 2 * time.Second},
	} {
		target.set(a.r)
		target.setTook(a.took)
		if i == 0 {
			h.step(time.Second)
		} else {
			h.step(h.period)
		}
	}
	got := st.Snapshot()
	want := StatsSnapshot{Successful: 3, Failed: 1, Count: 3, Sum: 2.033,
		//                .005 .01 .025 .05 .1 .25 .5 1  2.5 5  10
		Buckets: []uint64{1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3}}
	if got.Successful != want.Successful || got.Failed != want.Failed || got.Count != want.Count ||
		got.Sum != want.Sum || !slices.Equal(got.Buckets, want.Buckets) {
		t.Errorf("counted %+v, want %+v", got, want)
	}
	if !got.Observed() || (StatsSnapshot{}).Observed() {
		t.Error("Observed: a probe is observed once an attempt is counted")
	}
}
