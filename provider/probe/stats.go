package probe

import (
	"sync/atomic"
	"time"
)

// DurationBuckets are the upper bounds, in seconds, of kubelet's
// prober_probe_duration_seconds histogram: it sets none, so they are
// Prometheus' default buckets.
var DurationBuckets = [...]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Stats counts the attempts of a probe as kubelet's prober_probe_total and
// prober_probe_duration_seconds do, for the series of one container's
// probe of one kind: workers of successive runs of the container share it
// (kubelet's worker, and so its series, outlives a container's restart).
// Its methods are safe for concurrent use; a Snapshot taken while an
// attempt is counted may see its count before its duration.
type Stats struct {
	successful, failed atomic.Uint64
	// The histogram: non-cumulative counts by DurationBuckets (above the
	// last: count minus their sum). count is added to before a bucket and
	// read after them, so that no bucket reads above the count.
	buckets  [len(DurationBuckets)]atomic.Uint64
	count    atomic.Uint64
	sumNanos atomic.Int64
}

// StatsSnapshot is one reading of Stats.
type StatsSnapshot struct {
	// Successful and Failed are prober_probe_total by result: "successful"
	// (a success or a warning), "failed" (a failure, or an unknown verdict
	// without an error). Errored attempts are not counted, as on a kubelet;
	// its "unknown" result is never counted either (its prober never
	// reports one).
	Successful, Failed uint64
	// Buckets are the cumulative counts of the durations of the successful
	// attempts (kubelet observes no failed one), by DurationBuckets; Count
	// and Sum (seconds) are the histogram's count and sum.
	Buckets []uint64
	Count   uint64
	Sum     float64
}

// Observed says whether any attempt was counted: kubelet has no series
// for a probe before its first counted attempt.
func (s StatsSnapshot) Observed() bool { return s.Successful+s.Failed > 0 }

// success counts a successful attempt that took d.
func (s *Stats) success(d time.Duration) {
	s.successful.Add(1)
	s.count.Add(1)
	s.sumNanos.Add(int64(d))
	secs := d.Seconds()
	for i, le := range DurationBuckets {
		if secs <= le {
			s.buckets[i].Add(1)
			break
		}
	}
}

func (s *Stats) failure() { s.failed.Add(1) }

// Snapshot reads s.
func (s *Stats) Snapshot() StatsSnapshot {
	out := StatsSnapshot{Buckets: make([]uint64, len(DurationBuckets))}
	var cum uint64
	for i := range DurationBuckets {
		cum += s.buckets[i].Load()
		out.Buckets[i] = cum
	}
	out.Count = s.count.Load()
	out.Sum = time.Duration(s.sumNanos.Load()).Seconds()
	out.Successful = s.successful.Load()
	out.Failed = s.failed.Load()
	return out
}
