package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/internal/testwait"
	"github.com/remote-build-nodes/rbn/provider/probe"
)

func execProbe(cmd string, failures int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{cmd}}},
		PeriodSeconds:    1,
		TimeoutSeconds:   1,
		SuccessThreshold: 1,
		FailureThreshold: failures,
	}
}

// answers makes the fake host's exec probes exit 0 for the commands whose
// flag is set, 1 for the others, counting the calls of each.
type answers struct {
	ok    map[string]*atomic.Bool
	calls map[string]*atomic.Int32
}

func newAnswers(cmds ...string) *answers {
	a := &answers{ok: map[string]*atomic.Bool{}, calls: map[string]*atomic.Int32{}}
	for _, c := range cmds {
		a.ok[c], a.calls[c] = &atomic.Bool{}, &atomic.Int32{}
	}
	return a
}

func (a *answers) exec(_ context.Context, _ string, cmd []string, out io.Writer) (int, error) {
	a.calls[cmd[0]].Add(1)
	if a.ok[cmd[0]].Load() {
		return 0, nil
	}
	fmt.Fprintf(out, "%s: not yet", cmd[0])
	return 1, nil
}

func TestReadinessProbeDrivesReady(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	pd.Spec.Containers[0].ReadinessProbe = execProbe("ready?", 1)
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	a := newAnswers("ready?")
	h.rt.execSync = a.exec
	h.sync()
	h.wantPhase(corev1.PodRunning)
	if s := h.state("main"); s.Ready || h.condition(corev1.PodReady) != corev1.ConditionFalse {
		t.Fatalf("ready before the readiness probe succeeded: %+v", s)
	}
	testwait.Eventually(t, "an Unhealthy event", func() bool {
		for _, e := range h.events() {
			if strings.HasPrefix(e, "Warning Unhealthy Readiness probe failed: ready?: not yet") {
				return true
			}
		}
		return false
	})
	a.ok["ready?"].Store(true)
	testwait.Eventually(t, "ready once the probe succeeds", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		return h.state("main").Ready && h.condition(corev1.PodReady) == corev1.ConditionTrue
	})
	a.ok["ready?"].Store(false)
	testwait.Eventually(t, "not ready once it fails again", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		return !h.state("main").Ready && h.condition(corev1.PodReady) == corev1.ConditionFalse
	})
	h.wantCalls("stop ", 0) // readiness never kills
}

func TestLivenessProbeFailureRestarts(t *testing.T) {
	pd := testPod(corev1.RestartPolicyOnFailure, "main")
	pd.Spec.Containers[0].LivenessProbe = execProbe("alive?", 2)
	grace := int64(3)
	pd.Spec.Containers[0].LivenessProbe.TerminationGracePeriodSeconds = &grace
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	a := newAnswers("alive?")
	h.rt.execSync = a.exec
	h.sync()
	testwait.Eventually(t, "the container killed after two failures", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		return len(h.rt.called("stop ")) > 0
	})
	h.wantCalls("stop "+ctrName("main", 0)+" 3s", 1) // the probe's grace period, not the pod's
	ev := h.events()
	h.wantEvent(ev, "Warning Unhealthy Liveness probe failed: alive?: not yet")
	h.wantEvent(ev, "Normal Killing Container main failed liveness probe, will be restarted")
	if n := a.calls["alive?"].Load(); n < 2 {
		t.Errorf("killed after %d probe runs, want failureThreshold 2", n)
	}
	if last := h.state("main"); last.State.Waiting == nil || last.State.Waiting.Reason != "CrashLoopBackOff" {
		t.Fatalf("killed container: %+v, want waiting CrashLoopBackOff", last.State)
	}
	h.wantPhase(corev1.PodRunning)
	a.ok["alive?"].Store(true)
	h.clock.Step(10 * time.Second)
	h.sync()
	h.wantCalls("start "+ctrName("main", 1), 1)
	if s := h.state("main"); s.RestartCount != 1 || s.LastTerminationState.Terminated == nil || s.LastTerminationState.Terminated.Reason == "OOMKilled" {
		t.Fatalf("restarted container: %+v", s)
	}
}

func TestStartupProbeHoldsTheOthers(t *testing.T) {
	pd := testPod(corev1.RestartPolicyAlways, "main")
	c := &pd.Spec.Containers[0]
	c.StartupProbe = execProbe("started?", 1000)
	c.LivenessProbe = execProbe("alive?", 1)
	c.ReadinessProbe = execProbe("ready?", 1)
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	a := newAnswers("started?", "alive?", "ready?")
	a.ok["ready?"].Store(true)
	h.rt.execSync = a.exec
	h.sync()
	testwait.Eventually(t, "three startup probe runs", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		return a.calls["started?"].Load() >= 3
	})
	if s := h.state("main"); s.Started == nil || *s.Started || s.Ready {
		t.Fatalf("started or ready before the startup probe succeeded: %+v", s)
	}
	if n, m := a.calls["alive?"].Load(), a.calls["ready?"].Load(); n+m > 0 {
		t.Fatalf("liveness ran %d and readiness %d times before the startup probe succeeded", n, m)
	}
	// Healthy until seen started and ready: a failing liveness probe could
	// kill the run before the poll sees it ready (the clock runs fast).
	a.ok["alive?"].Store(true)
	a.ok["started?"].Store(true)
	testwait.Eventually(t, "started and ready", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		s := h.state("main")
		return s.Started != nil && *s.Started && s.Ready
	})
	// Now the liveness probe runs, and fails.
	a.ok["alive?"].Store(false)
	testwait.Eventually(t, "the container killed by its liveness probe", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		return len(h.rt.called("stop ")) > 0
	})
}

func TestStartupProbeFailureKillsUnderNever(t *testing.T) {
	pd := testPod(corev1.RestartPolicyNever, "main")
	pd.Spec.Containers[0].StartupProbe = execProbe("started?", 2)
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	h.rt.execSync = newAnswers("started?").exec
	h.sync()
	testwait.Eventually(t, "the pod failed", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		return h.status().Phase == corev1.PodFailed
	})
	h.wantEvent(h.events(), "Normal Killing Container main failed startup probe")
	for _, e := range h.rt.called("start ") {
		if strings.Contains(e, ctrName("main", 1)) {
			t.Fatal("restarted under restartPolicy Never")
		}
	}
}

// An exec probe's timeout bounds the command, not podman's setup of the
// session; cancelling the probe still ends it.
func TestProbeTargetExecTimeoutIsTheCommands(t *testing.T) {
	rt := newFakeRuntime(nil)
	var gotTimeout time.Duration
	var gotDeadline time.Time
	rt.execSync = func(ctx context.Context, _ string, _ []string, _ io.Writer) (int, error) {
		gotDeadline, _ = ctx.Deadline()
		<-ctx.Done() // ends only when cancelled
		return -1, ctx.Err()
	}
	rt.execTimeout = func(d time.Duration) { gotTimeout = d }
	probeCtx, cancelProbe := context.WithTimeout(context.Background(), time.Second)
	parent, cancelParent := context.WithCancel(probeCtx)
	done := make(chan error, 1)
	go func() {
		_, err := probeTarget{rt}.Exec(parent, "c1", []string{"true"}, io.Discard)
		done <- err
	}()
	testwait.Eventually(t, "the exec to start", func() bool { return len(rt.called("exec-sync")) == 1 })
	cancelParent()
	cancelProbe()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Exec after cancel = %v, want context.Canceled", err)
	}
	if gotTimeout <= 0 || gotTimeout > time.Second {
		t.Errorf("command timeout %s, want the probe's 1s", gotTimeout)
	}
	if time.Until(gotDeadline) < execSetupLimit/2 {
		t.Errorf("setup deadline %s away, want about %s: the probe's deadline must not bound podman's setup", time.Until(gotDeadline), execSetupLimit)
	}
}

// probeTotal is the node's prober_probe_total of p's main container for a
// kind and result, -1 without the series.
func (h *harness) probeTotal(kind, result string) float64 {
	h.t.Helper()
	fams, err := h.pods.ProbeMetrics(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	want := map[string]string{"container": "main", "namespace": "ns", "pod": "p", "pod_uid": string(testUID), "probe_type": kind, "result": result}
	for _, f := range fams {
		if f.GetName() != "prober_probe_total" {
			continue
		}
		for _, m := range f.Metric {
			got := map[string]string{}
			for _, l := range m.Label {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, want) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return -1
}

// The node's probe metrics count the attempts of its pods' probes; a
// restarted container's run goes on counting in its series (they are the
// container's, not the run's, as on a kubelet), and they go when the pod
// ends, as kubelet's when it removes the pod's probe workers.
func TestProbeMetricsFollowThePod(t *testing.T) {
	pd := testPod(corev1.RestartPolicyOnFailure, "main")
	pd.Spec.Containers[0].ReadinessProbe = execProbe("ready?", 1)
	pd.Spec.Containers[0].LivenessProbe = execProbe("alive?", 2)
	h := newHarness(t, pd)
	h.rt.images["registry.test/main:1"] = true
	a := newAnswers("ready?", "alive?")
	a.ok["ready?"].Store(true)
	h.rt.execSync = a.exec
	if got := h.probeTotal("Liveness", "failed"); got != -1 {
		t.Fatalf("a series before any attempt: %v", got)
	}
	h.sync()
	testwait.Eventually(t, "the container killed after two liveness failures", func() bool {
		h.clock.Step(time.Second)
		h.sync()
		return len(h.rt.called("stop ")) > 0
	})
	failed := h.probeTotal("Liveness", "failed")
	if failed < 2 || h.probeTotal("Readiness", "successful") < 1 {
		t.Fatalf("liveness failed %v, readiness successful %v: want the attempts counted",
			failed, h.probeTotal("Readiness", "successful"))
	}
	if got := h.probeTotal("Liveness", "successful"); got != -1 {
		t.Fatalf("liveness successful %v before any success, want no series", got)
	}
	a.ok["alive?"].Store(true)
	testwait.Eventually(t, "the restarted run's liveness success counted", func() bool {
		h.clock.Step(10 * time.Second)
		h.sync()
		return h.probeTotal("Liveness", "successful") >= 1
	})
	h.wantCalls("start "+ctrName("main", 1), 1)
	if got := h.probeTotal("Liveness", "failed"); got != failed {
		t.Errorf("liveness failed %v after the restart, want the first run's %v kept", got, failed)
	}
	h.rt.exit(ctrName("main", 1), 0)
	h.sync()
	h.wantPhase(corev1.PodSucceeded)
	if fams, _ := h.pods.ProbeMetrics(h.ctx); len(fams) != 0 {
		t.Errorf("probe metrics of an ended pod: %v", fams)
	}
}

// dialRuntime is a runtime whose Dial fails with err.
type dialRuntime struct {
	podRuntime
	err error
}

func (d dialRuntime) Dial(context.Context, string, string) (net.Conn, error) { return nil, d.err }

// A dial that failed on rbn's SSH connection to the host is the probe's
// transport (the attempt is thrown away); one the host could not open to
// the pod's port is the pod's.
func TestProbeTargetTellsTheTransportFromThePod(t *testing.T) {
	down := &sshconn.Error{Reason: sshconn.ReasonNotConnected, Addr: "127.0.1.2:22", Err: errors.New("no ssh connection")}
	if _, err := (probeTarget{dialRuntime{err: down}}).Dial(context.Background(), "tcp", "100.96.1.53:22"); !errors.Is(err, probe.ErrTransport) || !errors.Is(err, sshconn.ErrNotConnected) {
		t.Errorf("SSH down: %v, want ErrTransport wrapping ErrNotConnected", err)
	}
	refused := fmt.Errorf("ssh 127.0.1.2:22: open tcp channel to 100.96.1.53:22: %w", errors.New("ssh: rejected: connect failed (Connection refused)"))
	if _, err := (probeTarget{dialRuntime{err: refused}}).Dial(context.Background(), "tcp", "100.96.1.53:22"); err == nil || errors.Is(err, probe.ErrTransport) {
		t.Errorf("port closed: %v, want the pod's failure", err)
	}
}
