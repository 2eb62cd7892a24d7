package provider

import (
	"context"
	"io"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// ContainerLogs streams a container's log; logs stay readable after the
// container ends, until the pod is deleted. tail < 0 means all lines (the
// kubelet API cannot otherwise tell tailLines=0 from no tailLines).
func (p *Pods) ContainerLogs(ctx context.Context, namespace, name, container string, opts vkapi.ContainerLogOpts, tail int) (io.ReadCloser, error) {
	w, err := p.worker(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	pd := w.current()
	spec := findContainer(pd, container)
	if spec == nil {
		return nil, errdefs.NotFoundf("container %q is not in pod %s/%s", container, namespace, name)
	}
	if w.reclaimed.Load() {
		return nil, errdefs.InvalidInputf("container %q of pod %s/%s was removed from the host with its log: the pod had ended and the host was under disk pressure", container, namespace, name)
	}
	obs, err := w.observe(ctx)
	if err != nil {
		return nil, err
	}
	o := obs[container]
	if o == nil {
		return nil, errdefs.InvalidInputf("container %q in pod %s/%s is waiting to start", container, namespace, name)
	}
	target := o.current
	if opts.Previous {
		if o.previous == nil {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %s/%s not found", container, namespace, name)
		}
		target = o.previous
	}
	rc, err := p.rt.Logs(ctx, target.ID, logOptions(opts, tail, spec.TTY, target.Running, p.cfg.Clock.Now()))
	if err != nil {
		return nil, err
	}
	if opts.LimitBytes > 0 {
		return limitedReadCloser{Reader: io.LimitReader(rc, int64(opts.LimitBytes)), Closer: rc}, nil
	}
	return rc, nil
}

// logOptions maps the kubelet API's log options onto podman's; a relative
// sinceSeconds counts back from now. Only a running container's log is
// followed: following one that has ended returns its whole log, as kubelet
// does, and podman 4's follow of an ended container's log loses data (it
// returned 1.8 of 20 MiB, with lines cut out).
func logOptions(opts vkapi.ContainerLogOpts, tail int, tty, running bool, now time.Time) podman.LogOptions {
	lo := podman.LogOptions{Follow: opts.Follow && !opts.Previous && running, Tail: tail, Timestamps: opts.Timestamps, TTY: tty}
	switch {
	case !opts.SinceTime.IsZero():
		lo.Since = opts.SinceTime
	case opts.SinceSeconds > 0:
		lo.Since = now.Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	return lo
}

type limitedReadCloser struct {
	io.Reader
	io.Closer
}

// findContainer is the spec of the pod's container name (app, init or
// ephemeral), nil if none.
func findContainer(pd *corev1.Pod, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{pd.Spec.Containers, pd.Spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	for i := range pd.Spec.EphemeralContainers {
		if ec := &pd.Spec.EphemeralContainers[i]; ec.Name == name {
			c := corev1.Container(ec.EphemeralContainerCommon)
			return &c
		}
	}
	return nil
}
