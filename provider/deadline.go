package provider

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// The kubelet's reason and message for a pod past its activeDeadlineSeconds.
const (
	reasonDeadlineExceeded  = "DeadlineExceeded"
	messageDeadlineExceeded = "Pod was active on the node longer than the specified deadline"
)

// untilDeadline is how long the pod may still be active under its
// activeDeadlineSeconds, counted from its status' startTime as the
// kubelet counts it; ok is false when there is no deadline (none set, not
// started yet, or the pod already ended).
func untilDeadline(pd *corev1.Pod, now time.Time) (_ time.Duration, ok bool) {
	ads, start := pd.Spec.ActiveDeadlineSeconds, pd.Status.StartTime
	if ads == nil || start == nil || pod.Ended(pd.Status.Phase) {
		return 0, false
	}
	return start.Add(time.Duration(*ads) * time.Second).Sub(now), true
}

// exceedDeadline fails a pod past its deadline as the kubelet does: its
// running containers are stopped within the pod's grace period, and it is
// reported Failed (DeadlineExceeded) with their final states. The podman
// objects stay until the pod is deleted, as for any ended pod.
func (w *podWorker) exceedDeadline(ctx context.Context, pd *corev1.Pod) error {
	return w.stopAndFail(ctx, pd, reason{reasonDeadlineExceeded, messageDeadlineExceeded}, podGracePeriod(pd))
}

// stopGrace is the grace period of stopping a pod for why: none for an
// eviction for local storage (the kubelet's), the pod's own past its
// deadline.
func stopGrace(pd *corev1.Pod, why reason) time.Duration {
	if why.Reason == reasonEvicted {
		return 0
	}
	return podGracePeriod(pd)
}

// stopAndFail stops the pod's running containers within grace, then
// reports it Failed with why (an event with it too, once).
func (w *podWorker) stopAndFail(ctx context.Context, pd *corev1.Pod, why reason, grace time.Duration) error {
	if w.stoppedBy == nil || *w.stoppedBy != why {
		w.p.event(pd, corev1.EventTypeWarning, why.Reason, why.Message)
	}
	w.stoppedBy = &why
	obs, err := w.observe(ctx)
	if err != nil {
		return err
	}
	if failed := w.stopRunning(ctx, pd, obs, grace); len(failed) > 0 {
		errs := make([]error, 0, len(failed))
		for cname, err := range failed {
			errs = append(errs, fmt.Errorf("stop container %s: %w", cname, err))
		}
		return errors.Join(errs...) // the next sync stops what still runs
	}
	if obs, err = w.observe(ctx); err != nil {
		return err
	}
	w.failed = true
	w.report(ctx, pd, obs)
	return nil
}
