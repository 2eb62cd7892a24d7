package provider

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// ensureImage makes c's image present per its pull policy.
func (w *podWorker) ensureImage(ctx context.Context, pd *corev1.Pod, c pod.Container) error {
	if w.pulled[c.Image] {
		return nil
	}
	present, err := w.imagePresent(ctx, c.Image)
	if err != nil {
		return err
	}
	switch {
	case c.PullPolicy == corev1.PullNever && !present:
		err := fmt.Errorf("container image %q is not present with pull policy of Never", c.Image)
		w.waiting[c.K8sName] = reason{"ErrImageNeverPull", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "ErrImageNeverPull", err.Error())
		return err
	case present && c.PullPolicy != corev1.PullAlways:
		w.p.event(pd, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", c.Image))
	default:
		w.waiting[c.K8sName] = reason{"ContainerCreating", ""}
		w.p.event(pd, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", c.Image))
		start := w.p.cfg.Clock.Now()
		how, err := w.p.rt.PullImage(ctx, c.Image, pullCredentials(c.Image, w.p.pullSecrets(pd)), w.log)
		if err != nil {
			w.p.hostFailure()
			w.waiting[c.K8sName] = reason{"ErrImagePull", err.Error()}
			w.p.event(pd, corev1.EventTypeWarning, "Failed", fmt.Sprintf("Failed to pull image %q: %v", c.Image, err))
			return err
		}
		w.p.event(pd, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s%s", c.Image, w.p.cfg.Clock.Since(start).Round(time.Millisecond), how))
		w.p.rt.RefreshImages(ctx)
	}
	w.pulled[c.Image] = true
	delete(w.waiting, c.K8sName)
	return nil
}

// imagePresent tells whether ref is in the host's store. The host's image
// list (read with its facts, and after every pull) answers for a reference
// it names exactly, without a call; anything else, a short name say, is
// asked of podman, which resolves it as a pull would.
func (w *podWorker) imagePresent(ctx context.Context, ref string) (bool, error) {
	if _, found := slices.BinarySearch(w.p.rt.Images(), ref); found {
		return true, nil
	}
	return w.p.rt.ImageExists(ctx, ref)
}
