package probe

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"
)

// Event reasons kubelet gives probe events.
const (
	ReasonUnhealthy    = "Unhealthy"
	ReasonProbeWarning = "ProbeWarning"
)

// maxRetries is how often kubelet retries an attempt that errored before it
// reports the error (maxProbeRetries).
const maxRetries = 3

// API defaults for a probe's zero fields.
const (
	defaultPeriodSeconds    = 10
	defaultTimeoutSeconds   = 1
	defaultSuccessThreshold = 1
	defaultFailureThreshold = 3
)

// Config describes one probe of one container run (one container ID).
type Config struct {
	Kind        Kind
	Probe       *corev1.Probe // zero fields get the API defaults (period 10, timeout 1, success 1, failure 3)
	Container   *corev1.Container
	ContainerID string
	PodIP       string
	StartedAt   time.Time // the run's start: initialDelaySeconds counts from it
	Target      Target
	Clock       clock.WithTicker // k8s.io/utils/clock; nil is the real clock
	// Gate, when set, holds probing while it returns false: liveness and readiness
	// probes do not run before the startup probe succeeded. Checked before each attempt.
	Gate func() bool
	// OnChange is called (from the worker's goroutine) each time the worker's Result changes.
	OnChange func(Result)
	// Event is called for each event kubelet records for this probe: eventType
	// (corev1.EventTypeWarning), reason (ReasonUnhealthy, or ReasonProbeWarning
	// for kubelet's warning results) and message worded as kubelet words them.
	Event func(eventType, reason, message string)
	// Stats, when set, counts each attempt whose outcome is known, as
	// kubelet's prober metrics do (see Stats); the workers of a
	// container's successive runs share it.
	Stats *Stats
}

// Worker probes one container run periodically, as kubelet's prober worker.
type Worker struct {
	cfg     Config
	spec    corev1.Probe // cfg.Probe with the API defaults filled in
	trigger chan struct{}
	result  atomic.Int32

	// Owned by Run's goroutine: the current run of equal attempt results.
	last outcome
	run  int
}

// NewWorker returns a worker for cfg; Run starts it.
func NewWorker(cfg Config) *Worker {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	w := &Worker{cfg: cfg, trigger: make(chan struct{}, 1)}
	if cfg.Probe != nil {
		w.spec = *cfg.Probe
	}
	if w.spec.PeriodSeconds <= 0 {
		w.spec.PeriodSeconds = defaultPeriodSeconds
	}
	if w.spec.TimeoutSeconds <= 0 {
		w.spec.TimeoutSeconds = defaultTimeoutSeconds
	}
	if w.spec.SuccessThreshold <= 0 {
		w.spec.SuccessThreshold = defaultSuccessThreshold
	}
	if w.spec.FailureThreshold <= 0 {
		w.spec.FailureThreshold = defaultFailureThreshold
	}
	return w
}

// Result is the current result: initially Unknown for every kind (the caller maps
// Unknown to "not ready" for readiness, "not started" for startup, "alive" for liveness).
func (w *Worker) Result() Result { return Result(w.result.Load()) }

// Trigger asks for an attempt now rather than at the next period, as
// kubelet's manual trigger (used when a container has just started, so
// readiness need not wait a period); the period restarts from it. It does
// not block, and does nothing once Run has returned.
func (w *Worker) Trigger() {
	select {
	case w.trigger <- struct{}{}:
	default: // One pending trigger is enough.
	}
}

// Run probes until ctx ends or, for liveness and startup, until the result is final
// (startup: Success stops it; liveness/startup: Failure puts it on hold: kubelet then
// kills the container and a new run gets a new worker). Blocks.
func (w *Worker) Run(ctx context.Context) {
	if w.cfg.Probe == nil {
		return
	}
	c := w.cfg.Clock
	period := time.Duration(w.spec.PeriodSeconds) * time.Second
	// The first attempt waits out the initial delay, counted from the
	// container's start; later ones come every period after the first, as
	// kubelet's ticker.
	due := w.cfg.StartedAt.Add(time.Duration(w.spec.InitialDelaySeconds) * time.Second)
	for {
		manual, ok := w.wait(ctx, due)
		if !ok {
			return
		}
		start := c.Now()
		if manual || !due.Add(period).After(start) {
			// A manual attempt, or a late first one, restarts the period.
			due = start.Add(period)
		} else {
			due = due.Add(period)
		}
		if w.cfg.Gate == nil || w.cfg.Gate() {
			if !w.probe(ctx) {
				return
			}
		}
		// An attempt that outlasted periods skips their ticks, as a ticker
		// drops them.
		now := c.Now()
		for !due.After(now) {
			due = due.Add(period)
		}
	}
}

// wait blocks until due or a Trigger, reporting which; false means ctx ended.
func (w *Worker) wait(ctx context.Context, due time.Time) (manual, ok bool) {
	d := due.Sub(w.cfg.Clock.Now())
	if d <= 0 {
		return false, ctx.Err() == nil
	}
	timer := w.cfg.Clock.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false, false
	case <-timer.C():
		return false, true
	case <-w.trigger:
		return true, ctx.Err() == nil
	}
}

// probe makes one attempt, records kubelet's events for it and folds it into
// the thresholds; it reports whether the worker goes on.
func (w *Worker) probe(ctx context.Context) bool {
	start := w.cfg.Clock.Now()
	o, out, err := w.attemptWithRetries(ctx)
	took := w.cfg.Clock.Since(start)
	if ctx.Err() != nil {
		// The worker is stopping: whatever the attempt saw, a cancelled
		// dial or exec, is ours, not the container's.
		return false
	}
	if err != nil {
		// Kubelet throws an errored attempt away: it moves no threshold.
		w.event(ReasonUnhealthy, fmt.Sprintf("%s probe errored and resulted in %s state: %s", w.cfg.Kind, o, err))
		return true
	}
	w.count(o, took)
	var r Result
	switch o {
	case outcomeSuccess:
		r = Success
	case outcomeWarning:
		w.event(ReasonProbeWarning, fmt.Sprintf("%s probe warning: %s", w.cfg.Kind, out))
		r = Success
	case outcomeFailure:
		w.event(ReasonUnhealthy, fmt.Sprintf("%s probe failed: %s", w.cfg.Kind, out))
		r = Failure
	default:
		// Kubelet counts an unknown verdict without an error as a failure,
		// without an event.
		r = Failure
	}
	return w.record(r)
}

// attemptWithRetries runs the handler, again up to kubelet's retry count
// while it errors.
func (w *Worker) attemptWithRetries(ctx context.Context) (outcome, string, error) {
	timeout := time.Duration(w.spec.TimeoutSeconds) * time.Second
	var (
		o   outcome
		out string
		err error
	)
	for range maxRetries {
		o, out, err = attempt(ctx, w.cfg.Target, w.cfg.ContainerID, w.cfg.PodIP, w.cfg.Container, &w.spec.ProbeHandler, timeout)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return o, out, err
}

// record counts r into the current run of equal results and, once the run
// reaches its threshold, makes r the worker's result. It reports whether
// the worker goes on: a final startup result and a liveness failure end it.
func (w *Worker) record(r Result) bool {
	o := outcomeFailure
	if r == Success {
		o = outcomeSuccess
	}
	if o == w.last {
		w.run++
	} else {
		w.last, w.run = o, 1
	}
	if (r == Failure && w.run < int(w.spec.FailureThreshold)) ||
		(r == Success && w.run < int(w.spec.SuccessThreshold)) {
		return true
	}
	if Result(w.result.Swap(int32(r))) != r && w.cfg.OnChange != nil {
		w.cfg.OnChange(r)
	}
	switch {
	case w.cfg.Kind == Startup:
		// Started, or failed for good: either way nothing is left to probe
		// in this run.
		return false
	case w.cfg.Kind == Liveness && r == Failure:
		// On hold: the container is killed and its next run gets a new worker.
		return false
	}
	return true
}

// count counts an attempt that did not error into the worker's Stats: a
// success or a warning as successful, with its duration (retries
// included, as kubelet times a probe from its start), anything else as
// failed without one, as kubelet.
func (w *Worker) count(o outcome, took time.Duration) {
	switch st := w.cfg.Stats; {
	case st == nil:
	case o.result() == Success:
		st.success(took)
	default:
		st.failure()
	}
}

func (w *Worker) event(reason, message string) {
	if w.cfg.Event != nil {
		w.cfg.Event(corev1.EventTypeWarning, reason, message)
	}
}
