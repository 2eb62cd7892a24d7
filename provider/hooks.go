package provider

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/provider/probe"
)

// Container lifecycle hooks, as kubelet runs them (its lifecycle handler
// runner and killContainer): postStart right after the container started,
// preStop before it is stopped; exec in the container, httpGet from the
// build host to the pod's IP, sleep in rbn-kubelet.

// hookOutputLimit bounds the output of an exec hook kept for its event.
const hookOutputLimit = 10 << 10

// minStopGrace is what is left for SIGTERM after a preStop hook used up
// the grace period: kubelet's minimumGracePeriodInSeconds.
const minStopGrace = 2 * time.Second

// runHook runs one lifecycle handler of container c, whose current run is
// id. Its error is worded as kubelet's event message.
func (w *podWorker) runHook(ctx context.Context, pd *corev1.Pod, c *corev1.Container, id string, h *corev1.LifecycleHandler) error {
	podName := fmt.Sprintf("%s_%s(%s)", pd.Name, pd.Namespace, pd.UID)
	switch {
	case h.Exec != nil:
		out := &limitedBuffer{limit: hookOutputLimit}
		code, err := w.p.rt.ExecSync(ctx, id, h.Exec.Command, out, 0)
		if err == nil && code != 0 {
			err = fmt.Errorf("command '%s' exited with %d", strings.Join(h.Exec.Command, " "), code)
		}
		if err != nil {
			return fmt.Errorf("Exec lifecycle hook (%v) for Container %q in Pod %q failed - error: %v, message: %q", h.Exec.Command, c.Name, podName, err, out.String()) //nolint:staticcheck // kubelet's wording
		}
		return nil
	case h.HTTPGet != nil:
		if err := w.hookHTTPGet(ctx, c, h.HTTPGet); err != nil {
			return fmt.Errorf("HTTP lifecycle hook (%s) for Container %q in Pod %q failed - error: %v", h.HTTPGet.Path, c.Name, podName, err) //nolint:staticcheck // kubelet's wording
		}
		return nil
	case h.Sleep != nil:
		t := w.p.cfg.Clock.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-t.C():
		case <-ctx.Done():
		}
		return nil
	}
	return fmt.Errorf("Cannot run handler: invalid handler for Container %q in Pod %q", c.Name, podName) //nolint:staticcheck // kubelet's wording
}

// hookHTTPGet makes an httpGet hook's request from the build host, built as
// a probe's: only a failure to get an answer fails the hook, whatever the
// status, as with kubelet.
func (w *podWorker) hookHTTPGet(ctx context.Context, c *corev1.Container, g *corev1.HTTPGetAction) error {
	if g.Host == "" && w.sandbox.ip == "" {
		return errors.New("the pod has no IP address")
	}
	req, err := probe.NewHTTPRequest(ctx, g, c, w.sandbox.ip, hookUserAgent)
	if err != nil {
		return err
	}
	tr := probe.NewHTTPTransport(probeTarget{w.p.rt})
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, hookOutputLimit))
	return resp.Body.Close()
}

// hookUserAgent is kubelet's for hook requests, of the Kubernetes minor
// release rbn-kubelet stands in for.
const hookUserAgent = "kube-lifecycle/1.37"

// postStart runs c's postStart hook, if any, on its run id that has just
// started. A failure is reported as kubelet does (FailedPostStartHook), the
// run is killed, and false returned: the restart policy takes it from
// there, the container waiting with reason PostStartHookError meanwhile.
func (w *podWorker) postStart(ctx context.Context, pd *corev1.Pod, c *corev1.Container, id string) bool {
	if c == nil || c.Lifecycle == nil || c.Lifecycle.PostStart == nil {
		return true
	}
	hctx, cancel := w.interruptible(ctx)
	err := w.runHook(hctx, pd, c, id, c.Lifecycle.PostStart)
	cancel()
	if err == nil {
		return true
	}
	w.p.event(pd, corev1.EventTypeWarning, "FailedPostStartHook", err.Error())
	w.p.event(pd, corev1.EventTypeNormal, "Killing", "FailedPostStartHook")
	w.killed[id] = true // id is the run's container name
	if serr := w.stopContainer(ctx, pd, c, id, podGracePeriod(pd)); serr != nil {
		w.log.Warn("stopping a container whose postStart hook failed", "container", c.Name, "err", serr)
	}
	w.waiting[c.Name] = reason{"PostStartHookError", err.Error()}
	return false
}

// stopContainer stops the run id of container c (nil: no spec, no hook)
// as kubelet's killContainer does: the preStop hook first, within grace,
// then the stop signal, and SIGKILL once what is left of grace (at least
// minStopGrace after a hook) has passed.
func (w *podWorker) stopContainer(ctx context.Context, pd *corev1.Pod, c *corev1.Container, id string, grace time.Duration) error {
	if c != nil && c.Lifecycle != nil && c.Lifecycle.PreStop != nil && grace > 0 {
		start := w.p.cfg.Clock.Now()
		hctx, cancel := context.WithTimeout(ctx, grace)
		err := w.runHook(hctx, pd, c, id, c.Lifecycle.PreStop)
		cancel()
		if err != nil {
			w.p.event(pd, corev1.EventTypeWarning, "FailedPreStopHook", err.Error())
		}
		grace = max(grace-w.p.cfg.Clock.Since(start), minStopGrace)
	}
	err := w.p.rt.StopContainer(ctx, id, grace)
	if err != nil {
		w.acts.add(id, actFailed)
	} else {
		w.acts.add(id, actStopped)
	}
	return err
}

// interruptible is ctx, also cancelled when the pod is deleted: a hook
// that hangs must not hold up the pod's teardown. The worker runs one hook
// at a time; the returned cancel ends its interruptibility.
func (w *podWorker) interruptible(ctx context.Context) (context.Context, context.CancelFunc) {
	hctx, cancel := context.WithCancel(ctx)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.deleting != nil {
		cancel()
	}
	w.interrupt = cancel
	return hctx, func() {
		cancel()
		w.mu.Lock()
		w.interrupt = nil
		w.mu.Unlock()
	}
}

// limitedBuffer keeps the first limit bytes written to it and drops the
// rest, so that a chatty hook cannot grow rbn-kubelet's memory.
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
