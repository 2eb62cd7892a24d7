package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// observe lists the pod's containers on the host: newest and previous run of each.
func (w *podWorker) observe(ctx context.Context) (map[string]*observed, error) {
	pc := w.p.rt
	list, err := pc.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(w.uid())})
	if err != nil {
		return nil, err
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
	obs := map[string]*observed{}
	for name, rs := range runs {
		slices.SortFunc(rs, func(a, b run) int { return b.attempt - a.attempt })
		o := &observed{name: name, attempt: rs[0].attempt}
		if o.current, err = pc.InspectContainer(ctx, rs[0].id); err != nil {
			return nil, err
		}
		if len(rs) > 1 {
			if o.previous, err = pc.InspectContainer(ctx, rs[1].id); err != nil {
				return nil, err
			}
		}
		obs[name] = o
	}
	return obs, nil
}

// advance starts what should run next: the first unfinished init container,
// else every app container not running that the restart policy lets run.
// It returns how soon to try again: a back-off that ends, a configuration
// error to look at again (0: none pending).
func (w *podWorker) advance(ctx context.Context, pd *corev1.Pod, obs map[string]*observed) time.Duration {
	policy := pd.Spec.RestartPolicy
	for _, c := range w.plan.InitContainers {
		o := obs[c.K8sName]
		if o != nil && o.current.Running {
			return 0
		}
		if o != nil && o.current.Exited() && o.current.ExitCode == 0 {
			continue
		}
		if o != nil && o.current.Exited() || o != nil && o.current.Error != "" {
			// Failed init container: the pod fails under Never, else retries.
			if policy == corev1.RestartPolicyNever {
				return 0
			}
			return w.restartContainer(ctx, pd, c, o)
		}
		if o == nil {
			return w.runContainer(ctx, pd, c, 0, false)
		}
		return w.runContainer(ctx, pd, c, o.attempt, true) // created, never started
	}
	var next time.Duration
	for _, c := range w.plan.Containers {
		o := obs[c.K8sName]
		var d time.Duration
		switch {
		case o == nil:
			d = w.runContainer(ctx, pd, c, 0, false)
		case o.current.Running:
			continue
		case o.current.Exited() || o.current.Error != "":
			if !shouldRestart(policy, o.current.ExitCode) {
				continue
			}
			d = w.restartContainer(ctx, pd, c, o)
		default: // created, not started: start it
			d = w.runContainer(ctx, pd, c, o.attempt, true)
		}
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// restartContainer runs c again once its crash back-off since the last run
// ended has passed: 10 s doubling per restart up to 5 min, as kubelet, and
// back to 10 s after a run that lasted 10 minutes.
func (w *podWorker) restartContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, o *observed) time.Duration {
	next := o.attempt + 1
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
		w.p.hostFailure()
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return 0
	}
	if !w.emitted["started/"+name] {
		w.emitted["started/"+name] = true
		w.p.event(pd, corev1.EventTypeNormal, "Started", "Started container "+c.K8sName)
	}
	return 0
}

// createContainer pulls c's image and creates the container of one run of
// it. When it cannot, it records why and returns false with how soon to try
// again.
func (w *podWorker) createContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, attempt int) (time.Duration, bool) {
	if err := w.images.ensure(ctx, pd, c, w.p.pullSecrets(pd), w.p.hostFailure); err != nil {
		var ie *imageError
		switch {
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
	// Configuration errors are looked at again, as kubelet does: what a
	// subPath names may yet appear, created by another container.
	spec, err := pod.ContainerSpec(c, w.plan, attempt, w.sandbox.id, w.volumes.mountpoints)
	if err != nil {
		w.waiting[c.K8sName] = reason{"CreateContainerConfigError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return w.p.cfg.Retry.Config, false
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
