package controller

import (
	"context"
	"errors"
	"io"
	"net"

	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/hostvolume"
	"github.com/remote-build-nodes/rbn/internal/kubeletapi"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider"
)

// Handlers returns the kubelet API handlers of a served node.
func (c *Controller) Handlers(node string) (*kubeletapi.NodeHandlers, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, ok := c.runtimes[node]
	if !ok {
		return nil, false
	}
	return rt.api, true
}

// Served returns a served node's build host and its defaulted spec, for
// the volume provisioner (provisioner.Hosts).
func (c *Controller) Served(node string) (hostvolume.Runner, *rbnv1.RemoteBuildNodeSpec, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	rt, ok := c.runtimes[node]
	if !ok || rt.spec == nil {
		return nil, nil, false
	}
	return rt.host.SSH(), rt.spec, true
}

// VolumesChanged has a served node's volume root read again (a volume was
// made or removed there).
func (c *Controller) VolumesChanged(node string) {
	c.mu.Lock()
	rt, ok := c.runtimes[node]
	c.mu.Unlock()
	if ok && rt.volumes != nil {
		rt.volumes.Poke()
	}
}

// HostVolumes returns the watches of the served nodes' volume roots, by
// node, for rbn's metrics.
func (c *Controller) HostVolumes() map[string]*provider.HostVolumes {
	return servedParts(c, func(rt *nodeRuntime) *provider.HostVolumes { return rt.volumes })
}

// ImageGCs returns the image garbage collections of the served nodes, by
// node, for rbn's metrics.
func (c *Controller) ImageGCs() map[string]*provider.ImageGC {
	return servedParts(c, func(rt *nodeRuntime) *provider.ImageGC { return rt.imageGC })
}

// PodSets returns the pods of the served nodes, by node, for rbn's metrics.
func (c *Controller) PodSets() map[string]*provider.Pods {
	return servedParts(c, func(rt *nodeRuntime) *provider.Pods { return rt.pods })
}

// DiskPressures returns the disk pressure eviction managers of the served
// nodes, by node, for rbn's metrics.
func (c *Controller) DiskPressures() map[string]*provider.DiskPressure {
	return servedParts(c, func(rt *nodeRuntime) *provider.DiskPressure { return rt.diskPressure })
}

// servedParts collects one part of each served node's runtime, by node;
// nodes without it are left out.
func servedParts[T any](c *Controller, part func(*nodeRuntime) *T) map[string]*T {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]*T, len(c.runtimes))
	for name, rt := range c.runtimes {
		if p := part(rt); p != nil {
			out[name] = p
		}
	}
	return out
}

// nodeHandlers serves the kubelet API of a node from its pods. The stats
// collector lives as long as the runtime: it remembers its previous reading
// to turn cumulative CPU time into a rate.
func nodeHandlers(pods *provider.Pods) *kubeletapi.NodeHandlers {
	stats := provider.NewStatsCollector(pods)
	return &kubeletapi.NodeHandlers{
		ContainerLogs: func(ctx context.Context, namespace, pod, container string, opts vkapi.ContainerLogOpts, tail int) (io.ReadCloser, error) {
			r, err := pods.ContainerLogs(ctx, namespace, pod, container, opts, tail)
			return r, apiError(err)
		},
		// Unwrapped: the caller recognizes an exit code by the error's type.
		RunInContainer: func(ctx context.Context, namespace, pod, container string, cmd []string, attach vkapi.AttachIO) error {
			return apiError(pods.Exec(ctx, namespace, pod, container, cmd, attach))
		},
		AttachToContainer: func(ctx context.Context, namespace, pod, container string, attach vkapi.AttachIO) error {
			return apiError(pods.Attach(ctx, namespace, pod, container, attach))
		},
		PortForward: func(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
			return apiError(pods.PortForward(ctx, namespace, pod, port, stream))
		},
		DialPod: func(ctx context.Context, namespace, pod string, port int32) (net.Conn, error) {
			c, err := pods.DialPod(ctx, namespace, pod, port)
			return c, apiError(err)
		},
		GetPods: func(ctx context.Context) ([]*corev1.Pod, error) {
			l, err := pods.GetPods(ctx)
			return l, apiError(err)
		},
		GetStatsSummary: func(ctx context.Context) (*statsv1alpha1.Summary, error) {
			s, err := stats.Summary(ctx)
			return s, apiError(err)
		},
		GetMetricsResource: func(ctx context.Context) ([]*dto.MetricFamily, error) {
			m, err := stats.ResourceMetrics(ctx)
			return m, apiError(err)
		},
		GetMetricsCadvisor: func(ctx context.Context) ([]*dto.MetricFamily, error) {
			m, err := stats.CadvisorMetrics(ctx)
			return m, apiError(err)
		},
		GetMetrics: func(ctx context.Context) ([]*dto.MetricFamily, error) {
			m, err := pods.KubeletMetrics(ctx)
			return m, apiError(err)
		},
		GetMetricsProbes: func(ctx context.Context) ([]*dto.MetricFamily, error) {
			m, err := pods.ProbeMetrics(ctx)
			return m, apiError(err)
		},
		GetRunningPods: func(ctx context.Context) ([]*corev1.Pod, error) {
			l, err := pods.RuntimePods(ctx)
			return l, apiError(err)
		},
	}
}

// apiError classifies the errors of the podman layer the way the kubelet
// API's handlers report them (errdefs); the provider's own are already.
// Other errors, an exec's exit error among them, pass unchanged.
func apiError(err error) error {
	if err != nil && errors.Is(err, podman.ErrNotFound) && !errdefs.IsNotFound(err) {
		return errdefs.AsNotFound(err)
	}
	return err
}
