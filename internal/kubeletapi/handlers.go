package kubeletapi

import (
	"context"
	"io"
	"net"

	dto "github.com/prometheus/client_model/go"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// NodeHandlers answers the kubelet API for one node. As virtual-kubelet's
// api.PodHandlerConfig, the handlers are function fields, so that this
// package knows nothing of what serves the node: its owner (the controller)
// builds them. A nil field answers 501 Not Implemented.
//
// Errors are classified as virtual-kubelet's errdefs (not found, invalid
// input), which may be wrapped: the server looks through %w (see apiError).
// Exec and attach return a command's exit error unwrapped: the caller
// recognizes an exit code by the error's type.
type NodeHandlers struct {
	ContainerLogs     ContainerLogsFunc
	RunInContainer    vkapi.ContainerExecHandlerFunc
	AttachToContainer vkapi.ContainerAttachHandlerFunc
	PortForward       vkapi.PortForwardHandlerFunc
	// DialPod connects to a TCP port of a pod: rbn's raw port-forward
	// (spdyconn.RawPortForward), which relays the connection itself.
	DialPod            DialPodFunc
	GetPods            vkapi.PodListerFunc
	GetStatsSummary    vkapi.PodStatsSummaryHandlerFunc
	GetMetricsResource vkapi.PodMetricsResourceHandlerFunc
	// GetMetricsCadvisor is the node's /metrics/cadvisor, GetMetrics its
	// /metrics (kubelet's own series), GetMetricsProbes its /metrics/probes
	// (kubelet's prober series): rendered as /metrics/resource is.
	GetMetricsCadvisor vkapi.PodMetricsResourceHandlerFunc
	GetMetrics         vkapi.PodMetricsResourceHandlerFunc
	GetMetricsProbes   vkapi.PodMetricsResourceHandlerFunc
	// GetRunningPods lists the pods the runtime runs (GET /runningpods/),
	// each with its running containers' names and images only.
	GetRunningPods vkapi.PodListerFunc
}

// ContainerLogsFunc opens a container's log. tail is -1 without tailLines
// (every line), else opts.Tail (which cannot tell tailLines=0 from none).
// opts.LimitBytes is 0: the server applies limitBytes itself, after
// rewriting timestamps.
type ContainerLogsFunc func(ctx context.Context, namespace, pod, container string, opts vkapi.ContainerLogOpts, tail int) (io.ReadCloser, error)

// DialPodFunc connects to port of the pod namespace/pod.
type DialPodFunc func(ctx context.Context, namespace, pod string, port int32) (net.Conn, error)

// handlersKey carries a request's NodeHandlers, found once by podRoute or
// nodeRoute, to the route.
type handlersKey struct{}

func withHandlers(ctx context.Context, h *NodeHandlers) context.Context {
	return context.WithValue(ctx, handlersKey{}, h)
}

// handlersOf returns the handlers podRoute or nodeRoute found for the request.
func handlersOf(ctx context.Context) *NodeHandlers {
	h, _ := ctx.Value(handlersKey{}).(*NodeHandlers)
	if h == nil {
		return &NodeHandlers{} // every route answers 501
	}
	return h
}

func (s *Server) exec(ctx context.Context, namespace, pod, container string, cmd []string, attach vkapi.AttachIO) error {
	h := handlersOf(ctx).RunInContainer
	if h == nil {
		return errNotImplemented("exec")
	}
	return apiError(h(ctx, namespace, pod, container, cmd, attach))
}

func (s *Server) attach(ctx context.Context, namespace, pod, container string, attach vkapi.AttachIO) error {
	h := handlersOf(ctx).AttachToContainer
	if h == nil {
		return errNotImplemented("attach")
	}
	return apiError(h(ctx, namespace, pod, container, attach))
}

func (s *Server) portForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	h := handlersOf(ctx).PortForward
	if h == nil {
		return errNotImplemented("port-forward")
	}
	return apiError(h(ctx, namespace, pod, port, stream))
}

func (s *Server) statsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	h := handlersOf(ctx).GetStatsSummary
	if h == nil {
		return nil, errNotImplemented("stats summary")
	}
	sum, err := h(ctx)
	return sum, apiError(err)
}

// metricsOf serves a metrics route from the handler pick chooses among
// the request's node's; what names the route in a node's 501 without one.
func metricsOf(what string, pick func(*NodeHandlers) vkapi.PodMetricsResourceHandlerFunc) vkapi.PodMetricsResourceHandlerFunc {
	return func(ctx context.Context) ([]*dto.MetricFamily, error) {
		h := pick(handlersOf(ctx))
		if h == nil {
			return nil, errNotImplemented(what)
		}
		m, err := h(ctx)
		return m, apiError(err)
	}
}

// runningPodsOf lists the pods the runtime of the node of the port runs
// (GET /runningpods/).
func (s *Server) runningPodsOf(ctx context.Context) ([]*corev1.Pod, error) {
	h := handlersOf(ctx).GetRunningPods
	if h == nil {
		return nil, errNotImplemented("running pod list")
	}
	pods, err := h(ctx)
	return pods, apiError(err)
}

// podsOf lists the pods of the node of the port (GET /pods).
func (s *Server) podsOf(ctx context.Context) ([]*corev1.Pod, error) {
	h := handlersOf(ctx).GetPods
	if h == nil {
		return nil, errNotImplemented("pod list")
	}
	pods, err := h(ctx)
	return pods, apiError(err)
}
