package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/provider/probe"
)

// podProbes runs the probes of one pod's containers, as kubelet's prober
// manager does: one probe.Worker per probe of each container run, started
// when the pod worker sees the run running and stopped when it no longer
// does, so that a restarted container starts over (not started, not
// ready). A result that changes pokes the pod worker, which reports it in
// the pod's status and kills a container whose liveness or startup probe
// failed.
type podProbes struct {
	target probe.Target
	clock  clock.WithTicker
	poke   func()
	event  func(eventType, reason, message string)

	mu    sync.Mutex
	runs  map[string]*probedRun // by container name
	stats map[probeKey]*probe.Stats
	wg    sync.WaitGroup
}

// probeKey names a container's probe of one kind.
type probeKey struct {
	container string
	kind      probe.Kind
}

// probedRun is the probes of one container run.
type probedRun struct {
	id                           string
	cancel                       context.CancelFunc
	startup, liveness, readiness *probe.Worker
}

// probeVerdict is what the probes say of a running container.
type probeVerdict struct {
	started, ready bool
	// failed names the probe that failed for good (liveness or startup):
	// the container is to be killed. "" if none.
	failed probe.Kind
}

func newPodProbes(rt podRuntime, clk clock.WithTicker, poke func(), event func(eventType, reason, message string)) *podProbes {
	return &podProbes{target: probeTarget{rt}, clock: clk, poke: poke, event: event, runs: map[string]*probedRun{}, stats: map[probeKey]*probe.Stats{}}
}

// hasProbes says whether c declares any probe.
func hasProbes(c *corev1.Container) bool {
	return c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil
}

// sync starts the probes of the runs of containers that obs shows running
// and stops those of runs that ended or were replaced.
func (pp *podProbes) sync(ctx context.Context, containers []corev1.Container, podIP string, obs map[string]*observed) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	for i := range containers {
		c := &containers[i]
		if !hasProbes(c) {
			continue
		}
		o := obs[c.Name]
		running := o != nil && o.current != nil && o.current.Running
		if r := pp.runs[c.Name]; r != nil && (!running || r.id != o.current.ID) {
			r.cancel()
			delete(pp.runs, c.Name)
		}
		if running && pp.runs[c.Name] == nil {
			pp.runs[c.Name] = pp.start(ctx, c, o, podIP)
		}
	}
}

// start starts the probe workers of c's current run. pp.mu is held.
func (pp *podProbes) start(ctx context.Context, c *corev1.Container, o *observed, podIP string) *probedRun {
	rctx, cancel := context.WithCancel(ctx)
	r := &probedRun{id: o.current.ID, cancel: cancel}
	worker := func(kind probe.Kind, spec *corev1.Probe, gate func() bool, onChange func(probe.Result)) *probe.Worker {
		if spec == nil {
			return nil
		}
		k := probeKey{c.Name, kind}
		st := pp.stats[k]
		if st == nil {
			st = &probe.Stats{}
			pp.stats[k] = st
		}
		return probe.NewWorker(probe.Config{
			Kind: kind, Probe: spec, Container: c.DeepCopy(),
			ContainerID: o.current.ID, PodIP: podIP, StartedAt: o.current.StartedAt,
			Target: pp.target, Clock: pp.clock, Gate: gate,
			OnChange: onChange,
			Event:    pp.event,
			Stats:    st,
		})
	}
	changed := func(probe.Result) { pp.poke() }
	r.startup = worker(probe.Startup, c.StartupProbe, nil, func(res probe.Result) {
		if res == probe.Success {
			// The others probe at once rather than a period later, as on
			// a kubelet.
			for _, w := range []*probe.Worker{r.liveness, r.readiness} {
				if w != nil {
					w.Trigger()
				}
			}
		}
		pp.poke()
	})
	var gate func() bool
	if s := r.startup; s != nil {
		// Liveness and readiness wait for the startup probe, as on a kubelet.
		gate = func() bool { return s.Result() == probe.Success }
	}
	r.liveness = worker(probe.Liveness, c.LivenessProbe, gate, changed)
	r.readiness = worker(probe.Readiness, c.ReadinessProbe, gate, changed)
	for _, w := range []*probe.Worker{r.startup, r.liveness, r.readiness} {
		if w == nil {
			continue
		}
		pp.wg.Add(1)
		go func() {
			defer pp.wg.Done()
			w.Run(rctx)
		}()
	}
	return r
}

// verdict is what the probes say of the run id of c, which runs. A run
// not probed yet is not started when c has a startup probe, and not
// ready when it has a startup or readiness probe, as on a kubelet.
func (pp *podProbes) verdict(c *corev1.Container, id string) probeVerdict {
	v := probeVerdict{started: c.StartupProbe == nil}
	pp.mu.Lock()
	r := pp.runs[c.Name]
	pp.mu.Unlock()
	if r == nil || r.id != id {
		v.ready = v.started && c.ReadinessProbe == nil
		return v
	}
	if r.startup != nil {
		switch r.startup.Result() {
		case probe.Success:
			v.started = true
		case probe.Failure:
			v.failed = probe.Startup
		}
	}
	if r.liveness != nil && r.liveness.Result() == probe.Failure {
		v.failed = probe.Liveness
	}
	v.ready = v.started && (r.readiness == nil || r.readiness.Result() == probe.Success)
	return v
}

// forget stops the probes of c's run: it is being killed.
func (pp *podProbes) forget(name string) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if r := pp.runs[name]; r != nil {
		r.cancel()
		delete(pp.runs, name)
	}
}

// stop stops every probe and waits for them, and forgets their counts:
// the pod ends or goes.
func (pp *podProbes) stop() {
	pp.mu.Lock()
	for name, r := range pp.runs {
		r.cancel()
		delete(pp.runs, name)
	}
	clear(pp.stats)
	pp.mu.Unlock()
	pp.wg.Wait()
}

// probeCounts is one reading of a container's probe of one kind.
type probeCounts struct {
	container string
	kind      probe.Kind
	probe.StatsSnapshot
}

// counts reads the probes that counted an attempt, in no order.
func (pp *podProbes) counts() []probeCounts {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	var out []probeCounts
	for k, st := range pp.stats {
		if s := st.Snapshot(); s.Observed() {
			out = append(out, probeCounts{container: k.container, kind: k.kind, StatsSnapshot: s})
		}
	}
	return out
}

// probeTarget runs probes through a pod runtime.
type probeTarget struct{ rt podRuntime }

// Exec runs an exec probe's command. Its deadline (the probe's
// timeoutSeconds) bounds the command from its start in the container, not
// podman's setup of the exec session: that takes hundreds of milliseconds
// on a busy host where a CRI runtime takes tens, and would fail healthy
// containers under the 1 s default. The setup is bounded by execSetupLimit;
// the caller's cancellation still ends it all.
func (t probeTarget) Exec(ctx context.Context, containerID string, cmd []string, out io.Writer) (int, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return t.rt.ExecSync(ctx, containerID, cmd, out, 0)
	}
	timeout := time.Until(deadline)
	setup, cancel := context.WithTimeout(context.WithoutCancel(ctx), execSetupLimit+timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	defer stop()
	code, err := t.rt.ExecSync(setup, containerID, cmd, out, max(timeout, time.Millisecond))
	if err != nil && errors.Is(setup.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("podman did not start the command within %s: %w", execSetupLimit, context.DeadlineExceeded)
	}
	return code, err
}

// execSetupLimit bounds podman's setup of an exec probe's session.
const execSetupLimit = 30 * time.Second

// Dial connects from the host; a failure of rbn's SSH connection to the
// host (not of the pod's port) is probe.ErrTransport: the attempt is
// thrown away, not counted against the container.
func (t probeTarget) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := t.rt.Dial(ctx, network, address)
	if se := (*sshconn.Error)(nil); errors.As(err, &se) {
		return nil, fmt.Errorf("%w: %w", probe.ErrTransport, err)
	}
	return c, err
}
