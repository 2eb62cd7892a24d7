package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gorilla/mux"
	dto "github.com/prometheus/client_model/go"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/remote-build-nodes/rbn/provider"
)

// handler is every route. /healthz answers anyone (as kubelet's); all else
// needs an authenticated caller, and each route authorizes it against the
// node it concerns.
func (s *Server) handler() http.Handler {
	r := mux.NewRouter()
	r.StrictSlash(true)

	pod := func(h http.HandlerFunc) http.Handler { return s.podRoute(h) }
	node := func(h http.HandlerFunc) http.Handler { return s.nodeRoute(h) }
	streamOpts := []vkapi.ContainerExecHandlerOption{
		vkapi.WithExecStreamIdleTimeout(s.cfg.StreamIdleTimeout),
		vkapi.WithExecStreamCreationTimeout(s.cfg.StreamCreationTimeout),
	}
	r.Handle("/containerLogs/{namespace}/{pod}/{container}", pod(s.containerLogs)).Methods(http.MethodGet)
	r.Handle("/exec/{namespace}/{pod}/{container}", pod(vkapi.HandleContainerExec(s.exec, streamOpts...))).Methods(http.MethodPost, http.MethodGet)
	r.Handle("/attach/{namespace}/{pod}/{container}", pod(vkapi.HandleContainerAttach(s.attach, streamOpts...))).Methods(http.MethodPost, http.MethodGet)
	// Not vkapi.PodHandler's route: it passes the idle and creation
	// timeouts to HandlePortForward swapped (virtual-kubelet v1.14.1),
	// which would close an idle port-forward after 30s.
	r.Handle("/portForward/{namespace}/{pod}", pod(vkapi.HandlePortForward(s.portForward,
		vkapi.WithPortForwardStreamIdleTimeout(s.cfg.StreamIdleTimeout),
		vkapi.WithPortForwardCreationTimeout(s.cfg.StreamCreationTimeout),
	))).Methods(http.MethodPost, http.MethodGet)
	r.Handle("/run/{namespace}/{pod}/{container}", pod(unsupported("/run is not served by rbn-kubelet: use exec"))).Methods(http.MethodPost)

	r.Handle("/pods", node(vkapi.HandleRunningPods(s.podsOf))).Methods(http.MethodGet)
	r.Handle("/stats/summary", node(vkapi.HandlePodStatsSummary(s.statsSummary))).Methods(http.MethodGet)
	r.Handle(vkapi.MetricsResourceRouteSuffix, node(vkapi.HandlePodMetricsResource(s.metricsResource))).Methods(http.MethodGet)
	for _, p := range []string{"/metrics", "/metrics/cadvisor", "/metrics/probes"} {
		r.Handle(p, node(unsupported(p+" is not served by rbn-kubelet: resource metrics are at /metrics/resource"))).Methods(http.MethodGet)
	}
	r.PathPrefix("/logs/").Handler(node(unsupported("node logs (/logs/) are not served by rbn-kubelet")))
	r.PathPrefix("/checkpoint/").Handler(unsupported("checkpoint is not supported by rbn-kubelet"))
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found: "+r.URL.Path+" is not a kubelet API path rbn-kubelet serves", http.StatusNotFound)
	})

	top := http.NewServeMux()
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	top.Handle("/", s.authenticate(r))
	return top
}

func unsupported(msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { http.Error(w, msg, http.StatusNotImplemented) }
}

// podRoute resolves the pod of a pod route to its node and authorizes the
// caller against that node. On a node's own port, a pod of another node is
// not found, as on a kubelet.
func (s *Server) podRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vars := mux.Vars(r)
		ns, name := vars["namespace"], vars["pod"]
		target, shared := s.nodeOf(r.Context())
		if !shared && target == "" {
			http.Error(w, "no node is served on this port any more", http.StatusNotFound)
			return
		}
		p, ok := s.cfg.Resolver.Resolve(ns, name)
		if shared && ok {
			target = p.NodeName()
		}
		if target == "" {
			http.Error(w, fmt.Sprintf("pod %s/%s is not on any node served here", ns, name), http.StatusNotFound)
			return
		}
		if !s.allowed(w, r, target) {
			return
		}
		if !ok || p.NodeName() != target {
			http.Error(w, fmt.Sprintf("pod %s/%s is not on node %s", ns, name, target), http.StatusNotFound)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// nodeRoute serves a node-level route on a node's own port, authorized
// against that node; the shared port cannot tell which node is meant.
func (s *Server) nodeRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		node, shared := s.nodeOf(r.Context())
		switch {
		case shared:
			http.Error(w, fmt.Sprintf("%s is served on each node's own kubelet port (its status.daemonEndpoints.kubeletEndpoint.port), not on the shared port %d", r.URL.Path, s.sharedPort), http.StatusNotFound)
			return
		case node == "":
			http.Error(w, "no node is served on this port any more", http.StatusNotFound)
			return
		}
		if !s.allowed(w, r, node) {
			return
		}
		next.ServeHTTP(w, r)
	})
}

// allowed authorizes r against node, answering 403 (or 500 when the
// authorizer failed) when it is not.
func (s *Server) allowed(w http.ResponseWriter, r *http.Request, node string) bool {
	err := s.authorize(r, node)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errForbidden):
		http.Error(w, err.Error(), http.StatusForbidden)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
	return false
}

// resolve finds a pod's handler; podRoute has checked the node already.
func (s *Server) resolve(namespace, pod string) (*provider.Pods, error) {
	p, ok := s.cfg.Resolver.Resolve(namespace, pod)
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on any node served here", namespace, pod)
	}
	return p, nil
}

// nodePods resolves the node of the port a node route came in on.
func (s *Server) nodePods(ctx context.Context) (*provider.Pods, error) {
	node, _ := s.nodeOf(ctx)
	p, ok := s.cfg.Resolver.Node(node)
	if !ok {
		return nil, errdefs.NotFoundf("node %s is not served here", node)
	}
	return p, nil
}

func (s *Server) exec(ctx context.Context, namespace, pod, container string, cmd []string, attach vkapi.AttachIO) error {
	p, err := s.resolve(namespace, pod)
	if err != nil {
		return err
	}
	// Unwrapped: the caller recognizes an exit code by the error's type.
	return p.Exec(ctx, namespace, pod, container, cmd, attach)
}

func (s *Server) attach(ctx context.Context, namespace, pod, container string, attach vkapi.AttachIO) error {
	p, err := s.resolve(namespace, pod)
	if err != nil {
		return err
	}
	return p.Attach(ctx, namespace, pod, container, attach)
}

func (s *Server) portForward(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
	p, err := s.resolve(namespace, pod)
	if err != nil {
		return err
	}
	return p.PortForward(ctx, namespace, pod, port, stream)
}

func (s *Server) statsSummary(ctx context.Context) (*statsv1alpha1.Summary, error) {
	p, err := s.nodePods(ctx)
	if err != nil {
		return nil, err
	}
	return s.stats.collector(p).Summary(ctx)
}

func (s *Server) metricsResource(ctx context.Context) ([]*dto.MetricFamily, error) {
	p, err := s.nodePods(ctx)
	if err != nil {
		return nil, err
	}
	return s.stats.collector(p).ResourceMetrics(ctx)
}

// podsOf lists the pods of the node of the port (GET /pods).
func (s *Server) podsOf(ctx context.Context) ([]*corev1.Pod, error) {
	p, err := s.nodePods(ctx)
	if err != nil {
		return nil, err
	}
	return p.GetPods(ctx)
}
