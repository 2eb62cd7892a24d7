package provider

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// volumeResync is how often a running pod's Files volumes are rendered
// again from the listers and written when they changed: kubelet remounts
// them at each of a pod's periodic syncs, every minute with up to 50%
// jitter; rbn takes up to 25% (volumeResyncJitter), so that a change shows
// within 75 s of the informer seeing it. A change of the pod's labels or annotations (downwardAPI)
// refreshes them at the next sync, and the service account token at 80%
// of its life (podToken.refreshAt).
const (
	volumeResync       = time.Minute
	volumeResyncJitter = 0.25
)

// refreshVolumes renders the pod's Files volumes and writes those that
// changed (atomicwrite.go) when a refresh is due, renewing the service
// account token first when it is due; it sets when the next one is due
// (refreshAt; zero for a pod without Files volumes). A failure (a TokenRequest refused, a Secret deleted, the host not
// answering) never fails the pod: the volume keeps its last content, as on
// a kubelet, the failure is reported once as a FailedMount event, and the
// refresh is tried again after Retry.Config.
func (w *podWorker) refreshVolumes(ctx context.Context, pd *corev1.Pod) {
	if !slices.ContainsFunc(w.plan.Volumes, func(v pod.Volume) bool { return v.Kind == pod.VolumeFiles }) {
		w.refreshAt = time.Time{}
		return
	}
	now := w.p.cfg.Clock.Now()
	w.mu.Lock()
	meta := w.metaChanged
	w.metaChanged = false
	w.mu.Unlock()
	tokenDue := w.token.value != "" && !now.Before(w.token.refreshAt())
	if !meta && now.Before(w.nextRefresh) && (!tokenDue || w.refreshErr != "") {
		w.refreshAt = w.refreshDue()
		return
	}
	var errs []error
	if tokenDue {
		if err := w.p.requestToken(ctx, pd, &w.token); err != nil {
			errs = append(errs, fmt.Errorf("MountVolume.SetUp failed for volume %q: failed to fetch token: %w", tokenVolume(pd), err))
		} else {
			w.log.Info("service account token renewed", "expires", w.token.expires)
		}
	}
	in, err := w.p.input(ctx, pd, w.sandbox.ip, &w.token)
	if err != nil {
		errs = append(errs, err)
	} else {
		files, failed := pod.RenderFiles(in)
		for _, name := range slices.Sorted(maps.Keys(failed)) {
			errs = append(errs, fmt.Errorf("MountVolume.SetUp failed for volume %q: %w", name, failed[name]))
		}
		changed, err := w.volumes.refresh(ctx, w.plan, files)
		if len(changed) > 0 {
			w.log.Info("volumes updated", "volumes", changed)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	w.nextRefresh = now.Add(wait.Jitter(volumeResync, volumeResyncJitter))
	err = errors.Join(errs...)
	switch {
	case err == nil:
		w.refreshErr = ""
	default:
		w.nextRefresh = now.Add(w.p.cfg.Retry.Config)
		w.log.Info("volume refresh incomplete", "err", err, "retryIn", w.p.cfg.Retry.Config)
		if msg := err.Error(); msg != w.refreshErr {
			w.refreshErr = msg
			w.p.event(pd, corev1.EventTypeWarning, "FailedMount", msg)
		}
	}
	w.refreshAt = w.refreshDue()
}

// refreshDue is when the next refresh is due; after a failure, the
// retry's time alone counts.
func (w *podWorker) refreshDue() time.Time {
	next := w.nextRefresh
	if at := w.token.refreshAt(); w.token.value != "" && w.refreshErr == "" && at.Before(next) {
		next = at
	}
	return next
}

// tokenVolume names the volume of the pod's projected service account token.
func tokenVolume(pd *corev1.Pod) string {
	for _, v := range pd.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				return v.Name
			}
		}
	}
	return ""
}
