package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// reply is what the scripted container answers an exec probe.
type reply struct {
	code int
	out  string
	err  error
}

var (
	ok   = reply{code: 0}
	bad  = reply{code: 1, out: "not yet"}
	gone = reply{err: errors.New("container is stopping")}
)

// scripted answers every exec with the reply set for the current step.
type scripted struct {
	mu    sync.Mutex
	next  reply
	calls int
}

func (s *scripted) Exec(_ context.Context, _ string, _ []string, out io.Writer) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	_, _ = io.WriteString(out, s.next.out)
	return s.next.code, s.next.err
}

// Dial is never used: the scripted probes are exec probes.
func (s *scripted) Dial(context.Context, string, string) (net.Conn, error) {
	return nil, errors.New("scripted target does not dial")
}

func (s *scripted) set(r reply) {
	s.mu.Lock()
	s.next = r
	s.mu.Unlock()
}

func (s *scripted) callCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// harness runs a Worker on a fake clock and records what it reports.
type harness struct {
	t      *testing.T
	clock  *testingclock.FakeClock
	target Target
	w      *Worker
	period time.Duration
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	changes []Result
	events  []string
	gate    bool
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func startWorker(t *testing.T, target Target, cfg Config) *harness {
	t.Helper()
	h := &harness{t: t, clock: testingclock.NewFakeClock(t0), target: target, done: make(chan struct{}), gate: true}
	cfg.Target = target
	cfg.Clock = h.clock
	cfg.StartedAt = t0
	cfg.ContainerID = "cid"
	cfg.PodIP = "127.0.0.1"
	if cfg.Container == nil {
		cfg.Container = &corev1.Container{Name: "app"}
	}
	cfg.OnChange = func(r Result) {
		h.mu.Lock()
		h.changes = append(h.changes, r)
		h.mu.Unlock()
	}
	cfg.Event = func(eventType, reason, message string) {
		h.mu.Lock()
		h.events = append(h.events, eventType+" "+reason+" "+message)
		h.mu.Unlock()
	}
	if cfg.Gate != nil {
		// Open or closed from the start as the test's gate says: the worker
		// may ask before the test's first setGate.
		h.gate = cfg.Gate()
		cfg.Gate = func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			return h.gate
		}
	}
	h.w = NewWorker(cfg)
	h.period = time.Duration(h.w.spec.PeriodSeconds) * time.Second
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() {
		defer close(h.done)
		h.w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	return h
}

func (h *harness) finished() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

// settle waits until the worker is idle: waiting for its next attempt, or
// returned.
func (h *harness) settle() {
	h.t.Helper()
	testwait.Eventually(h.t, "the worker to wait or return", func() bool { return h.clock.HasWaiters() || h.finished() })
}

// step advances the clock by d once the worker waits, and waits until the
// worker has handled what came due.
func (h *harness) step(d time.Duration) {
	h.t.Helper()
	h.settle()
	h.clock.Step(d)
	h.settle()
}

func (h *harness) setGate(open bool) {
	h.mu.Lock()
	h.gate = open
	h.mu.Unlock()
}

func (h *harness) recorded() ([]Result, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.changes), slices.Clone(h.events)
}

func execProbe(p corev1.Probe) *corev1.Probe {
	p.Exec = &corev1.ExecAction{Command: []string{"check"}}
	return &p
}

func TestWorkerThresholds(t *testing.T) {
	const (
		failed  = "Warning Unhealthy %s probe failed: not yet"
		errored = "Warning Unhealthy %s probe errored and resulted in unknown state: container is stopping"
	)
	tests := []struct {
		name  string
		kind  Kind
		probe corev1.Probe
		// replies, one attempt per period; the first attempt is at start
		// (no initial delay).
		replies []reply
		// want is Result() after each attempt.
		want        []Result
		wantChanges []Result
		wantEvents  []string // %s is the kind
		// wantDone is the attempt after which Run returns; 0 is never.
		wantDone int
	}{{
		name: "readiness flips both ways at its thresholds and keeps probing",
		kind: Readiness, probe: corev1.Probe{SuccessThreshold: 2, FailureThreshold: 2},
		replies:     []reply{ok, ok, bad, bad, ok, bad, ok, ok},
		want:        []Result{Unknown, Success, Success, Failure, Failure, Failure, Failure, Success},
		wantChanges: []Result{Success, Failure, Success},
		wantEvents:  []string{failed, failed, failed},
	}, {
		name:        "readiness defaults: one success, three failures",
		kind:        Readiness,
		replies:     []reply{bad, bad, bad, ok},
		want:        []Result{Unknown, Unknown, Failure, Success},
		wantChanges: []Result{Failure, Success},
		wantEvents:  []string{failed, failed, failed},
	}, {
		name: "liveness: a success resets the failure run, the threshold's failure ends it",
		kind: Liveness, probe: corev1.Probe{FailureThreshold: 3},
		replies:     []reply{bad, bad, ok, bad, bad, bad, ok},
		want:        []Result{Unknown, Unknown, Success, Success, Success, Failure},
		wantChanges: []Result{Success, Failure},
		wantEvents:  []string{failed, failed, failed, failed, failed},
		wantDone:    6,
	}, {
		name: "startup stops at success",
		kind: Startup, probe: corev1.Probe{FailureThreshold: 5},
		replies:     []reply{bad, ok, ok},
		want:        []Result{Unknown, Success},
		wantChanges: []Result{Success},
		wantEvents:  []string{failed},
		wantDone:    2,
	}, {
		name: "startup goes on hold at failure",
		kind: Startup, probe: corev1.Probe{FailureThreshold: 2},
		replies:     []reply{bad, bad, ok},
		want:        []Result{Unknown, Failure},
		wantChanges: []Result{Failure},
		wantEvents:  []string{failed, failed},
		wantDone:    2,
	}, {
		name: "an errored attempt is thrown away: it neither counts nor breaks a run",
		kind: Liveness, probe: corev1.Probe{FailureThreshold: 2},
		replies:     []reply{bad, gone, gone, bad},
		want:        []Result{Unknown, Unknown, Unknown, Failure},
		wantChanges: []Result{Failure},
		wantEvents:  []string{failed, errored, errored, failed},
		wantDone:    4,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := &scripted{}
			target.set(tt.replies[0])
			h := startWorker(t, target, Config{Kind: tt.kind, Probe: execProbe(tt.probe)})
			h.settle()
			for i := range tt.replies {
				if i > 0 {
					target.set(tt.replies[i])
					h.step(h.period)
				}
				if i < len(tt.want) {
					if got := h.w.Result(); got != tt.want[i] {
						t.Fatalf("after attempt %d: Result = %v, want %v", i+1, got, tt.want[i])
					}
				}
				if done := h.finished(); done != (tt.wantDone != 0 && i+1 >= tt.wantDone) {
					t.Fatalf("after attempt %d: returned = %v, want return after attempt %d", i+1, done, tt.wantDone)
				}
			}
			changes, events := h.recorded()
			if !slices.Equal(changes, tt.wantChanges) {
				t.Errorf("OnChange got %v, want %v", changes, tt.wantChanges)
			}
			var wantEvents []string
			for _, e := range tt.wantEvents {
				wantEvents = append(wantEvents, fmt.Sprintf(e, tt.kind))
			}
			if !slices.Equal(events, wantEvents) {
				t.Errorf("events:\n got %q\nwant %q", events, wantEvents)
			}
		})
	}
}

func TestWorkerRetriesAnErroredAttempt(t *testing.T) {
	target := &scripted{}
	target.set(gone)
	h := startWorker(t, target, Config{Kind: Readiness, Probe: execProbe(corev1.Probe{})})
	h.settle()
	if got := target.callCount(); got != maxRetries {
		t.Errorf("exec ran %d times for an errored attempt, want %d", got, maxRetries)
	}
	if _, events := h.recorded(); len(events) != 1 {
		t.Errorf("events = %q, want one for the attempt", events)
	}
}

func TestWorkerInitialDelay(t *testing.T) {
	target := &scripted{}
	h := startWorker(t, target, Config{Kind: Readiness, Probe: execProbe(corev1.Probe{InitialDelaySeconds: 15, PeriodSeconds: 5})})
	h.step(14 * time.Second)
	if n := target.callCount(); n != 0 {
		t.Fatalf("probed %d times before the initial delay", n)
	}
	h.step(time.Second)
	if n := target.callCount(); n != 1 {
		t.Fatalf("probed %d times at the initial delay, want 1", n)
	}
	h.step(4 * time.Second)
	if n := target.callCount(); n != 1 {
		t.Fatalf("probed %d times within a period, want 1", n)
	}
	h.step(time.Second)
	if n := target.callCount(); n != 2 {
		t.Fatalf("probed %d times after a period, want 2", n)
	}
	if got := h.w.Result(); got != Success {
		t.Errorf("Result = %v, want Success", got)
	}
}

func TestWorkerGate(t *testing.T) {
	target := &scripted{}
	h := startWorker(t, target, Config{Kind: Liveness, Probe: execProbe(corev1.Probe{}), Gate: func() bool { return false }})
	h.setGate(false)
	h.step(0) // the first attempt, at start, is held
	h.step(h.period)
	h.step(h.period)
	if n := target.callCount(); n != 0 {
		t.Fatalf("probed %d times while gated", n)
	}
	h.setGate(true)
	h.step(h.period)
	if n := target.callCount(); n != 1 {
		t.Fatalf("probed %d times once the gate opened, want 1", n)
	}
	if got := h.w.Result(); got != Success {
		t.Errorf("Result = %v, want Success", got)
	}
}

func TestWorkerTrigger(t *testing.T) {
	target := &scripted{}
	h := startWorker(t, target, Config{Kind: Readiness, Probe: execProbe(corev1.Probe{PeriodSeconds: 10})})
	h.settle()
	h.step(3 * time.Second)
	h.w.Trigger()
	testwait.Eventually(t, "the triggered attempt", func() bool { return target.callCount() == 2 })
	// The period restarts at the trigger: nothing at the old tick (t0+10s).
	h.step(7 * time.Second)
	if n := target.callCount(); n != 2 {
		t.Fatalf("probed %d times at the old tick, want 2", n)
	}
	h.step(3 * time.Second)
	if n := target.callCount(); n != 3 {
		t.Fatalf("probed %d times a period after the trigger, want 3", n)
	}
}

func TestWorkerStopsWithContext(t *testing.T) {
	target := &scripted{}
	h := startWorker(t, target, Config{Kind: Readiness, Probe: execProbe(corev1.Probe{})})
	h.settle()
	h.cancel()
	testwait.Eventually(t, "Run to return", h.finished)
	if _, events := h.recorded(); len(events) != 0 {
		t.Errorf("events = %q, want none", events)
	}
}

func TestWorkerWithoutProbeReturns(t *testing.T) {
	w := NewWorker(Config{Kind: Readiness})
	w.Run(context.Background())
	if got := w.Result(); got != Unknown {
		t.Errorf("Result = %v, want Unknown", got)
	}
}

func TestWorkerDefaults(t *testing.T) {
	p := &corev1.Probe{}
	w := NewWorker(Config{Probe: p})
	if w.spec.PeriodSeconds != 10 || w.spec.TimeoutSeconds != 1 || w.spec.SuccessThreshold != 1 || w.spec.FailureThreshold != 3 {
		t.Errorf("defaults = %+v", w.spec)
	}
	if p.PeriodSeconds != 0 {
		t.Error("NewWorker changed the caller's probe")
	}
}

func TestWorkerHTTPEvents(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.test/", http.StatusFound)
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	_, port := splitHostPort(t, s.Listener.Addr().String())
	c := &corev1.Container{Name: "app", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: int32(port)}}}
	tests := []struct {
		kind      Kind
		action    corev1.HTTPGetAction
		want      Result
		wantEvent string
		// wantCounts: successful and failed in the probe's Stats; an
		// errored attempt is not counted.
		wantCounts [2]uint64
	}{
		{kind: Readiness, action: corev1.HTTPGetAction{Path: "/away", Port: intstr.FromString("web")}, want: Success, wantCounts: [2]uint64{1, 0},
			wantEvent: `Warning ProbeWarning Readiness probe warning: Probe terminated redirects, Response body: <a href="http://elsewhere.test/">Found</a>.` + "\n\n"},
		{kind: Liveness, action: corev1.HTTPGetAction{Path: "/fail", Port: intstr.FromString("web")}, want: Unknown,
			wantEvent: "Warning Unhealthy Liveness probe failed: HTTP probe failed with statuscode: 503", wantCounts: [2]uint64{0, 1}},
		{kind: Startup, action: corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("nope")}, want: Unknown,
			wantEvent: `Warning Unhealthy Startup probe errored and resulted in unknown state: strconv.Atoi: parsing "nope": invalid syntax`},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			p := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &tt.action}}
			st := &Stats{}
			h := startWorker(t, &netTarget{}, Config{Kind: tt.kind, Probe: p, Container: c, Stats: st})
			h.settle()
			if got := h.w.Result(); got != tt.want {
				t.Errorf("Result = %v, want %v", got, tt.want)
			}
			if s := st.Snapshot(); [2]uint64{s.Successful, s.Failed} != tt.wantCounts || s.Count != tt.wantCounts[0] {
				t.Errorf("counted %+v, want successful, failed = %v (a warning is a success)", s, tt.wantCounts)
			}
			if _, events := h.recorded(); !slices.Equal(events, []string{tt.wantEvent}) {
				t.Errorf("events = %q, want %q", events, tt.wantEvent)
			}
		})
	}
}
