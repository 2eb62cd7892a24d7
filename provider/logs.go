package provider

import (
	"bufio"
	"context"
	"io"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/crilog"
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
	lo := logOptions(opts, tail, spec.TTY, target.Running, p.cfg.Clock.Now())
	var rc io.ReadCloser
	if readsFile(target, lo) {
		if rc, err = p.logFile(ctx, target.LogPath, lo); err != nil {
			w.log.Info("reading the log file failed, asking podman", "container", container, "path", target.LogPath, "err", err)
			rc = nil
		}
	}
	if rc == nil {
		if rc, err = p.rt.Logs(ctx, target.ID, lo); err != nil {
			return nil, err
		}
	}
	if opts.LimitBytes > 0 {
		return readCloser{Reader: io.LimitReader(rc, int64(opts.LimitBytes)), Closer: rc}, nil
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

// readsFile says whether a log is read from its file on the host, as
// kubelet reads a CRI runtime's, rather than through podman's logs API:
// podman 4's API formats and frames each line on the host, at a few MiB/s
// (docs/benchmarks-notes.md), where the file crosses the connection at its
// speed. A followed log (podman watches the file) and a tail (podman's
// API sends only the lines asked for) still go through podman.
func readsFile(c *podman.ContainerState, lo podman.LogOptions) bool {
	fileDriver := c.LogDriver == "k8s-file" || c.LogDriver == "json-file"
	return fileDriver && c.LogPath != "" && !lo.Follow && lo.Tail < 0
}

// logFile streams the container log file at path, as podman's logs API
// would give it. A file the host cannot read fails here, before anything
// is returned, so that the caller can ask podman instead.
func (p *Pods) logFile(ctx context.Context, path string, lo podman.LogOptions) (io.ReadCloser, error) {
	f, err := p.rt.ReadFile(ctx, path)
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(f, 64*1024)
	if _, err := br.Peek(1); err != nil && err != io.EOF {
		_ = f.Close()
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		defer f.Close()
		pw.CloseWithError(crilog.Copy(pw, br, crilog.Options{Since: lo.Since, Timestamps: lo.Timestamps}))
	}()
	return readCloser{Reader: pr, Closer: closeFunc(func() error {
		_ = pr.Close()
		return f.Close()
	})}, nil
}

type closeFunc func() error

func (f closeFunc) Close() error { return f() }

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
