// Package callstats counts a client's calls to a service by operation: how
// many, how they ended, and the time they took. The client keeps a
// Recorder and hands out its Snapshot; internal/metrics reports it when
// Prometheus scrapes. The package depends on nothing, so that the metrics
// side reads a client's counts without importing the client (importing
// internal/podman would bring the podman bindings into every program that
// serves metrics).
package callstats

import (
	"sync"
	"time"
)

// Result is how a call ended.
type Result uint8

const (
	Success Result = iota
	// Error: the call failed (the service's refusal, no answer, or the
	// caller's context ending).
	Error
	// NotFound: the service answered that the object does not exist,
	// which is a normal answer (a container already removed, an image
	// not pulled yet) rather than a failure.
	NotFound
)

// Bounds are the upper bounds of the latency buckets: from a local
// inspect's milliseconds to an image pull's minute. A call slower than the
// last bound is counted in Calls only (Prometheus' +Inf bucket).
var Bounds = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute,
}

// Op is one operation's totals since the Recorder was made: cumulative,
// never reset. Calls counts the calls that ended, whatever their Result;
// Errors and NotFound those that ended so (neither counts the other), and
// the rest succeeded. Duration is the time the calls took, all results,
// and Buckets[i] counts those that took more than Bounds[i-1] and at most
// Bounds[i] (not cumulative).
type Op struct {
	Calls, Errors, NotFound uint64
	Duration                time.Duration
	Buckets                 [len(Bounds)]uint64
}

// Succeeded is the number of calls that ended with Success.
func (o Op) Succeeded() uint64 { return o.Calls - o.Errors - o.NotFound }

// Add returns the totals of o and p together (two clients of one service).
func (o Op) Add(p Op) Op {
	sum := Op{Calls: o.Calls + p.Calls, Errors: o.Errors + p.Errors, NotFound: o.NotFound + p.NotFound, Duration: o.Duration + p.Duration}
	for i := range sum.Buckets {
		sum.Buckets[i] = o.Buckets[i] + p.Buckets[i]
	}
	return sum
}

// Cumulative returns the number of calls that took at most each of
// Bounds, as a Prometheus histogram's buckets count them.
func (o Op) Cumulative() [len(Bounds)]uint64 {
	var out [len(Bounds)]uint64
	var n uint64
	for i, c := range o.Buckets {
		n += c
		out[i] = n
	}
	return out
}

// Recorder keeps the totals by operation. Its zero value is ready to use;
// it is safe for concurrent use.
type Recorder struct {
	mu  sync.Mutex
	ops map[string]Op
}

// Record counts one call of op that ended with res after took.
func (r *Recorder) Record(op string, res Result, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ops == nil {
		r.ops = map[string]Op{}
	}
	o := r.ops[op]
	o.Calls++
	switch res {
	case Error:
		o.Errors++
	case NotFound:
		o.NotFound++
	}
	o.Duration += took
	for i, b := range Bounds {
		if took <= b {
			o.Buckets[i]++
			break
		}
	}
	r.ops[op] = o
}

// Snapshot returns a copy of the totals, by operation; operations never
// called are absent.
func (r *Recorder) Snapshot() map[string]Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]Op, len(r.ops))
	for k, v := range r.ops {
		out[k] = v
	}
	return out
}
