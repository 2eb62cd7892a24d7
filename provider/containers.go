package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"
	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
	"github.com/remote-build-nodes/rbn/provider/probe"
)

// observe lists the pod's containers on the host: newest and previous run of each.
func (w *podWorker) observe(ctx context.Context) (map[string]*observed, error) {
	obs, _, err := w.look(ctx)
	return obs, err
}

// look is observe, with what the list showed of the pod's containers on
// its node (for the relist, hostacts.go).
func (w *podWorker) look(ctx context.Context) (map[string]*observed, podLook, error) {
	pc := w.p.rt
	uid := w.uid()
	list, err := pc.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(uid)})
	if err != nil {
		return nil, nil, err
	}
	type run struct {
		attempt int
		id      string
	}
	runs := map[string][]run{}
	for _, c := range list {
		name := c.Labels[pod.LabelContainer]
		if name == "" {
			continue // infra or loader
		}
		a, _ := strconv.Atoi(c.Labels[pod.LabelAttempt])
		runs[name] = append(runs[name], run{a, c.ID})
	}
	bootID := w.p.bootID()
	obs := map[string]*observed{}
	for name, rs := range runs {
		slices.SortFunc(rs, func(a, b run) int { return b.attempt - a.attempt })
		o := &observed{name: name, attempt: rs[0].attempt, bootID: bootID}
		if o.current, err = pc.InspectContainer(ctx, rs[0].id); err != nil {
			return nil, nil, err
		}
		if len(rs) > 1 {
			if o.previous, err = pc.InspectContainer(ctx, rs[1].id); err != nil {
				return nil, nil, err
			}
		}
		obs[name] = o
	}
	w.withCarried(obs, bootID)
	return obs, lookOf(list, uid, w.p.cfg.NodeName), nil
}

// advance starts what should run next: the init containers in order, each
// to completion (a native sidecar only until it is started, then it keeps
// running), then every app container not running that the restart policy
// lets run; it kills what failed its liveness or startup probe. Once the app
// containers have ended for good it starts nothing (step stops the
// sidecars). It returns how soon to try again: a back-off that ends, a
// configuration error to look at again (0: none pending).
func (w *podWorker) advance(ctx context.Context, pd *corev1.Pod, obs map[string]*observed) time.Duration {
	policy := pd.Spec.RestartPolicy
	if w.appsEnded(pd, obs) {
		return 0 // the pod has completed: its sidecars are not run again
	}
	var next time.Duration
	soonest := func(d time.Duration) {
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	for _, c := range w.plan.InitContainers {
		o := obs[c.K8sName]
		if c.Sidecar {
			d, started := w.advanceSidecar(ctx, pd, c, o)
			soonest(d)
			if !started {
				return next // the next init container waits for it
			}
			continue
		}
		if o != nil && o.current.Running {
			return next
		}
		if o != nil && o.current.Exited() && o.current.ExitCode == 0 {
			continue
		}
		if o != nil && o.current.Exited() || o != nil && o.current.Error != "" {
			// Failed init container: the pod fails under Never (and its
			// sidecars stop), else retries.
			if policy == corev1.RestartPolicyNever {
				w.stopSidecars(ctx, pd, obs, podGracePeriod(pd))
				return next
			}
			soonest(w.restartContainer(ctx, pd, c, o))
			return next
		}
		if o == nil {
			soonest(w.runContainer(ctx, pd, c, 0, false))
			return next
		}
		soonest(w.runContainer(ctx, pd, c, o.attempt, true)) // created, never started
		return next
	}
	for _, c := range w.plan.Containers {
		o := obs[c.K8sName]
		var d time.Duration
		switch {
		case o == nil:
			d = w.runContainer(ctx, pd, c, 0, false)
		case o.current.Running:
			d = w.checkLiveness(ctx, pd, c, o)
		case o.current.Exited() || o.current.Error != "":
			if !shouldRestart(policy, o.current.ExitCode) && !(w.unhealthy[c.K8sName] && policy != corev1.RestartPolicyNever) {
				continue
			}
			d = w.restartContainer(ctx, pd, c, o)
		default: // created, not started: start it
			d = w.runContainer(ctx, pd, c, o.attempt, true)
		}
		soonest(d)
	}
	// Debug containers run once, never again, as on a kubelet.
	for _, c := range w.plan.EphemeralContainers {
		switch o := obs[c.K8sName]; {
		case o == nil:
			soonest(w.runContainer(ctx, pd, c, 0, false))
		case !o.current.Running && o.current.StartedAt.IsZero() && o.current.Error == "":
			soonest(w.runContainer(ctx, pd, c, o.attempt, true))
		}
	}
	return next
}

// appsEnded says whether every app container has run and ended for good
// under the pod's restart policy: the pod has completed.
func (w *podWorker) appsEnded(pd *corev1.Pod, obs map[string]*observed) bool {
	for _, c := range w.plan.Containers {
		o := obs[c.K8sName]
		if o == nil || !(o.current.Exited() || o.current.Error != "") {
			return false
		}
		if shouldRestart(pd.Spec.RestartPolicy, o.current.ExitCode) || w.unhealthy[c.K8sName] && pd.Spec.RestartPolicy != corev1.RestartPolicyNever {
			return false
		}
	}
	return len(w.plan.Containers) > 0
}

// advanceSidecar keeps a native sidecar running: started when it never
// was, run again whenever it exited (whatever the pod's restart policy,
// with the crash back-off), killed when its liveness or startup probe
// failed. started says whether the init containers after it may run: it
// runs and its startup probe, if any, succeeded; or it had started before
// and is only being restarted.
func (w *podWorker) advanceSidecar(ctx context.Context, pd *corev1.Pod, c pod.Container, o *observed) (_ time.Duration, started bool) {
	switch {
	case o == nil:
		return w.runContainer(ctx, pd, c, 0, false), false
	case o.current.Running:
		spec := findContainer(pd, c.K8sName)
		if spec != nil && hasProbes(spec) && !w.probes.verdict(spec, o.current.ID).started {
			return w.checkLiveness(ctx, pd, c, o), false
		}
		return w.checkLiveness(ctx, pd, c, o), true
	case o.current.Exited() || o.current.Error != "":
		return w.restartContainer(ctx, pd, c, o), !o.current.StartedAt.IsZero()
	default: // created, not started
		return w.runContainer(ctx, pd, c, o.attempt, true), false
	}
}

// checkLiveness kills the running container c when its liveness or
// startup probe failed for good.
func (w *podWorker) checkLiveness(ctx context.Context, pd *corev1.Pod, c pod.Container, o *observed) time.Duration {
	spec := findContainer(pd, c.K8sName)
	if spec == nil || !hasProbes(spec) {
		return 0
	}
	failed := w.probes.verdict(spec, o.current.ID).failed
	if failed == "" {
		return 0
	}
	return w.killUnhealthy(ctx, pd, spec, o, failed)
}

// sidecarsRunning counts the plan's native sidecars that obs shows running.
func sidecarsRunning(plan *pod.Plan, obs map[string]*observed) int {
	n := 0
	for _, c := range plan.InitContainers {
		if o := obs[c.K8sName]; c.Sidecar && o != nil && o.current.Running {
			n++
		}
	}
	return n
}

// stopSidecars stops the running native sidecars one after another, the
// last declared first, as kubelet does once the app containers have ended
// or the pod goes; each within what is left of grace. It says which could
// not be stopped.
func (w *podWorker) stopSidecars(ctx context.Context, pd *corev1.Pod, obs map[string]*observed, grace time.Duration) map[string]error {
	failed := map[string]error{}
	deadline := w.p.cfg.Clock.Now().Add(grace)
	for i := len(w.plan.InitContainers) - 1; i >= 0; i-- {
		c := w.plan.InitContainers[i]
		o := obs[c.K8sName]
		if !c.Sidecar || o == nil || !o.current.Running {
			continue
		}
		w.probes.forget(c.K8sName)
		w.p.event(pd, corev1.EventTypeNormal, "Killing", "Stopping container "+c.K8sName)
		left := max(deadline.Sub(w.p.cfg.Clock.Now()), 0)
		if err := w.stopContainer(ctx, pd, findContainer(pd, c.K8sName), o.current.ID, left); err != nil {
			failed[c.K8sName] = err
		}
	}
	return failed
}

// killUnhealthy stops a container whose liveness or startup probe failed,
// within the probe's terminationGracePeriodSeconds or else the pod's, as
// kubelet does; the restart policy then runs it again, whatever its exit
// code, unless it is Never. It returns how soon to look again when the
// stop failed.
func (w *podWorker) killUnhealthy(ctx context.Context, pd *corev1.Pod, c *corev1.Container, o *observed, failed probe.Kind) time.Duration {
	msg := fmt.Sprintf("Container %s failed %s probe", c.Name, strings.ToLower(string(failed)))
	if pd.Spec.RestartPolicy != corev1.RestartPolicyNever {
		msg += ", will be restarted"
	}
	w.p.event(pd, corev1.EventTypeNormal, "Killing", msg)
	spec := c.LivenessProbe
	if failed == probe.Startup {
		spec = c.StartupProbe
	}
	grace := podGracePeriod(pd)
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	w.killed[o.current.Name] = true
	w.unhealthy[c.Name] = true
	if err := w.stopContainer(ctx, pd, c, o.current.ID, grace); err != nil {
		// The probe's verdict stands: the next sync tries again.
		w.p.hostFailure()
		w.log.Warn("stopping an unhealthy container failed", "container", c.Name, "err", err)
		return w.p.cfg.Retry.Sync
	}
	w.probes.forget(c.Name)
	return 0
}

// podGracePeriod is the pod's termination grace period (30 s by default).
func podGracePeriod(pd *corev1.Pod) time.Duration {
	if s := pd.Spec.TerminationGracePeriodSeconds; s != nil {
		return time.Duration(*s) * time.Second
	}
	return corev1.DefaultTerminationGracePeriodSeconds * time.Second
}

// restartContainer runs c again once its crash back-off since the last run
// ended has passed: 10 s doubling per restart up to 5 min, as kubelet, and
// back to 10 s after a run that lasted 10 minutes. A lost run (its host
// rebooted) did not crash: it runs again at once.
func (w *podWorker) restartContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, o *observed) time.Duration {
	next := o.attempt + 1
	if o.current.Lost {
		delete(w.backoff, c.K8sName)
		return w.runContainer(ctx, pd, c, next, false)
	}
	wait := restartBackoff(next)
	if last := o.current; !last.StartedAt.IsZero() && last.FinishedAt.Sub(last.StartedAt) >= 10*time.Minute {
		wait = restartBackoff(1)
	}
	ended := o.current.FinishedAt
	if ended.IsZero() {
		ended = w.p.cfg.Clock.Now()
	}
	if until := ended.Add(wait); w.p.cfg.Clock.Now().Before(until) {
		if _, ok := w.backoff[c.K8sName]; !ok {
			w.p.event(pd, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container "+c.K8sName)
		}
		w.backoff[c.K8sName] = until
		return until.Sub(w.p.cfg.Clock.Now())
	}
	delete(w.backoff, c.K8sName)
	return w.runContainer(ctx, pd, c, next, false)
}

// runContainer pulls, creates and starts one run of c, honouring back-offs;
// created: the run's container exists already (created, never started), and
// is started as it is. It returns the time left on a back-off that kept it
// from running.
func (w *podWorker) runContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, attempt int, created bool) time.Duration {
	now := w.p.cfg.Clock.Now()
	if until, ok := w.backoff[c.K8sName]; ok && now.Before(until) {
		return until.Sub(now)
	}
	name := pod.ContainerName(w.uid(), c.K8sName, attempt)
	if !created {
		if d, ok := w.createContainer(ctx, pd, c, attempt); !ok {
			return d
		}
		w.acts.add(name, actCreated)
	}
	if !w.emitted["created/"+name] {
		w.emitted["created/"+name] = true
		w.p.event(pd, corev1.EventTypeNormal, "Created", "Created container "+c.K8sName)
	}
	if err := w.volumes.fillThrough(ctx, w.plan, c, attempt, name); err != nil {
		w.p.hostFailure()
		w.waiting[c.K8sName] = reason{"CreateContainerError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return w.p.cfg.Retry.Create
	}
	delete(w.waiting, c.K8sName)
	if err := w.sandbox.await(); err != nil {
		return 0 // step reports it and sets the pod up again
	}
	if err := w.p.rt.StartContainer(ctx, name); err != nil {
		// The run is over before it began: the restart policy and its
		// back-off take it from the container's exited state.
		w.acts.add(name, actFailed)
		w.p.hostFailure()
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return 0
	}
	w.acts.add(name, actStarted)
	delete(w.unhealthy, c.K8sName)
	if !w.emitted["started/"+name] {
		w.emitted["started/"+name] = true
		w.p.event(pd, corev1.EventTypeNormal, "Started", "Started container "+c.K8sName)
	}
	spec := findContainer(pd, c.K8sName)
	w.postStart(ctx, pd, spec, name)
	if c.Sidecar && (spec == nil || spec.StartupProbe == nil) {
		// The containers after a native sidecar wait for it to have
		// started, which a sidecar without a startup probe has now: they
		// run at the next sync, which nothing else would cause (podman's
		// start events wake no worker; a startup probe's success does).
		w.poke()
	}
	return 0
}

// createContainer pulls c's image and creates the container of one run of
// it. When it cannot, it records why and returns false with how soon to try
// again.
func (w *podWorker) createContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, attempt int) (time.Duration, bool) {
	if err := w.images.ensure(ctx, pd, c, w.p.pullSecrets(ctx, pd), w.p.hostFailure); err != nil {
		var ie *imageError
		var lost *hostLostError
		switch {
		case errors.As(err, &lost):
			// No back-off: the worker waits for the host (not Ready), then
			// pulls again at once.
			return w.p.cfg.Retry.Sync, false
		case errors.As(err, &ie) && ie.Failures > 0:
			return w.backOff(pd, c.K8sName, ie.Failures, "ImagePullBackOff", err), false
		case errors.As(err, &ie):
			// Not pulled (policy Never): looked at again, as the image may appear.
			w.waiting[c.K8sName] = reason{ie.Reason, err.Error()}
			return w.p.cfg.Retry.Config, false
		}
		// The host did not answer whether it has the image (kubelet's
		// ErrImageInspect).
		w.p.hostFailure()
		w.waiting[c.K8sName] = reason{"ImageInspectError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "InspectFailed", fmt.Sprintf("Failed to inspect image %q: %v", c.Image, err))
		return w.p.cfg.Retry.Sync, false
	}
	if err := w.volumes.terminationFile(ctx, w.plan, c, attempt); err != nil {
		w.p.hostFailure()
		w.waiting[c.K8sName] = reason{"CreateContainerError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return w.p.cfg.Retry.Create, false
	}
	// Configuration errors are looked at again, as kubelet does: what a
	// subPath names may yet appear, created by another container.
	spec, err := pod.ContainerSpec(c, w.plan, attempt, w.sandbox.id, w.volumes.mountpoints)
	if err != nil {
		w.waiting[c.K8sName] = reason{"CreateContainerConfigError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return w.p.cfg.Retry.Config, false
	}
	if c.TargetContainer != "" {
		id, err := w.runningID(ctx, c.TargetContainer)
		if err != nil {
			w.waiting[c.K8sName] = reason{"CreateContainerError", err.Error()}
			w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
			return w.p.cfg.Retry.Config, false
		}
		spec.PidNS = specgen.Namespace{NSMode: specgen.FromContainer, Value: id}
	}
	if boot := w.p.bootID(); boot != "" {
		spec.Labels[pod.LabelBootID] = boot
	}
	if err := w.volumes.resolveSubPaths(ctx, w.plan, c, spec); err != nil {
		why := "CreateContainerConfigError"
		if !errors.Is(err, ErrSubPathOutsideVolume) && !errors.Is(err, ErrSubPathUnresolvable) {
			why = "CreateContainerError" // the host did not answer
		}
		w.waiting[c.K8sName] = reason{why, err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return w.p.cfg.Retry.Config, false
	}
	if _, err := w.p.rt.CreateContainer(ctx, spec); err != nil && !errors.Is(err, podman.ErrConflict) {
		// The image may have left the host since it was listed.
		w.images.forget(ctx, c.Image)
		w.p.hostFailure()
		w.waiting[c.K8sName] = reason{"CreateContainerError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return w.p.cfg.Retry.Create, false
	}
	return 0, true
}

// runningID is the container ID of the running run of the pod's
// container name.
func (w *podWorker) runningID(ctx context.Context, name string) (string, error) {
	list, err := w.p.rt.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(w.uid()), pod.LabelContainer: name})
	if err != nil {
		return "", err
	}
	for _, c := range list {
		if c.State == "running" {
			return c.ID, nil
		}
	}
	return "", fmt.Errorf("target container %q is not running", name)
}

// backOff records the failures-th consecutive failure to prepare a container
// (an image pull) and when to try again.
func (w *podWorker) backOff(pd *corev1.Pod, name string, failures int, why string, err error) time.Duration {
	d := restartBackoff(failures)
	w.backoff[name] = w.p.cfg.Clock.Now().Add(d)
	w.waiting[name] = reason{why, err.Error()}
	w.p.event(pd, corev1.EventTypeNormal, "BackOff", fmt.Sprintf("Back-off %s: %v", why, err))
	return d
}

func (w *podWorker) setWaitingAll(pd *corev1.Pod, why, msg string) {
	for _, c := range append(slices.Clone(pd.Spec.InitContainers), pd.Spec.Containers...) {
		w.waiting[c.Name] = reason{why, msg}
	}
}
