package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/gorilla/mux"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"

	"github.com/remote-build-nodes/rbn/internal/spdyconn"
)

// handler is every route. /healthz answers anyone (as kubelet's); all else
// needs an authenticated caller, and each route authorizes it against the
// node it concerns.
func (s *Server) handler() http.Handler {
	r := mux.NewRouter()
	r.StrictSlash(true)

	pod := func(h http.HandlerFunc) http.Handler { return s.podRoute(h) }
	stream := func(h http.HandlerFunc) http.Handler { return s.podRoute(spdyFrames(h)) }
	node := func(h http.HandlerFunc) http.Handler { return s.nodeRoute(h, true) }
	// Routes answered the same for every node: no handlers needed.
	anyNode := func(h http.HandlerFunc) http.Handler { return s.nodeRoute(h, false) }
	streamOpts := []vkapi.ContainerExecHandlerOption{
		vkapi.WithExecStreamIdleTimeout(s.cfg.StreamIdleTimeout),
		vkapi.WithExecStreamCreationTimeout(s.cfg.StreamCreationTimeout),
	}
	r.Handle("/containerLogs/{namespace}/{pod}/{container}", pod(s.containerLogs)).Methods(http.MethodGet)
	r.Handle("/exec/{namespace}/{pod}/{container}", stream(vkapi.HandleContainerExec(s.exec, streamOpts...))).Methods(http.MethodPost, http.MethodGet)
	r.Handle("/attach/{namespace}/{pod}/{container}", stream(vkapi.HandleContainerAttach(s.attach, streamOpts...))).Methods(http.MethodPost, http.MethodGet)
	// Not vkapi.PodHandler's route: it passes the idle and creation
	// timeouts to HandlePortForward swapped (virtual-kubelet v1.14.1),
	// which would close an idle port-forward after 30s.
	// The port-forward streams call their handler with a context of their
	// own (context.Background in cri-streaming), not the request's: the
	// node's handlers that podRoute found are bound to each request here.
	portForwardOpts := []vkapi.PortForwardHandlerOption{
		vkapi.WithPortForwardStreamIdleTimeout(s.cfg.StreamIdleTimeout),
		vkapi.WithPortForwardCreationTimeout(s.cfg.StreamCreationTimeout),
	}
	r.Handle("/portForward/{namespace}/{pod}", stream(func(w http.ResponseWriter, req *http.Request) {
		if spdyconn.IsRawPortForward(req) {
			s.rawPortForward(w, req)
			return
		}
		h := handlersOf(req.Context())
		vkapi.HandlePortForward(func(ctx context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
			return s.portForward(withHandlers(ctx, h), namespace, pod, port, stream)
		}, portForwardOpts...)(w, req)
	})).Methods(http.MethodPost, http.MethodGet)
	r.Handle("/run/{namespace}/{pod}/{container}", pod(unsupported("/run is not served by rbn-kubelet: use exec"))).Methods(http.MethodPost)

	// vkapi.HandleRunningPods encodes any pod list as kubelet's PodList:
	// /pods gets the pods as the node knows them, /runningpods/ the
	// runtime's view (kubelet's shape: names, UID, running containers).
	r.Handle("/pods", node(vkapi.HandleRunningPods(s.podsOf))).Methods(http.MethodGet)
	r.Handle("/runningpods/", node(vkapi.HandleRunningPods(s.runningPodsOf))).Methods(http.MethodGet)
	r.Handle("/stats/summary", node(vkapi.HandlePodStatsSummary(s.statsSummary))).Methods(http.MethodGet)
	// Every metrics endpoint renders metric families in the text format
	// as virtual-kubelet renders /metrics/resource.
	for _, m := range []struct {
		path, what string
		pick       func(*NodeHandlers) vkapi.PodMetricsResourceHandlerFunc
	}{
		{vkapi.MetricsResourceRouteSuffix, "resource metrics", func(h *NodeHandlers) vkapi.PodMetricsResourceHandlerFunc { return h.GetMetricsResource }},
		{"/metrics/cadvisor", "cAdvisor metrics", func(h *NodeHandlers) vkapi.PodMetricsResourceHandlerFunc { return h.GetMetricsCadvisor }},
		{"/metrics", "kubelet metrics", func(h *NodeHandlers) vkapi.PodMetricsResourceHandlerFunc { return h.GetMetrics }},
		{"/metrics/probes", "probe metrics", func(h *NodeHandlers) vkapi.PodMetricsResourceHandlerFunc { return h.GetMetricsProbes }},
	} {
		r.Handle(m.path, node(vkapi.HandlePodMetricsResource(metricsOf(m.what, m.pick)))).Methods(http.MethodGet)
	}
	r.PathPrefix("/logs/").Handler(anyNode(unsupported("node logs (/logs/) are not served by rbn-kubelet")))
	r.PathPrefix("/checkpoint/").Handler(unsupported("checkpoint is not supported by rbn-kubelet"))
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 page not found: "+r.URL.Path+" is not a kubelet API path rbn-kubelet serves", http.StatusNotFound)
	})

	top := http.NewServeMux()
	// Unauthenticated, for the container's probes: they say nothing about
	// any node. /healthz: the server answers (liveness). /readyz: the
	// process can serve nodes (readiness).
	top.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	top.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = io.WriteString(w, "ok")
	})
	top.Handle("/", s.authenticate(r))
	return top
}

func unsupported(msg string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) { http.Error(w, msg, http.StatusNotImplemented) }
}

// podRoute resolves the pod of a pod route to its node through the pod
// index (the pod's spec.nodeName) and authorizes the caller against that
// node. On a node's own port, a pod of another node is not found, as on a
// kubelet.
func (s *Server) podRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vars := mux.Vars(r)
		ns, name := vars["namespace"], vars["pod"]
		target, shared := s.nodeOf(r.Context())
		if !shared && target == "" {
			http.Error(w, "no node is served on this port any more", http.StatusNotFound)
			return
		}
		podNode := s.podNode(ns, name)
		var h *NodeHandlers
		if podNode != "" {
			h, _ = s.cfg.Handlers(podNode)
		}
		if shared && h != nil {
			target = podNode
		}
		if target == "" {
			http.Error(w, fmt.Sprintf("pod %s/%s is not on any node served here", ns, name), http.StatusNotFound)
			return
		}
		if !s.allowed(w, r, target) {
			return
		}
		if h == nil || podNode != target {
			http.Error(w, fmt.Sprintf("pod %s/%s is not on node %s", ns, name, target), http.StatusNotFound)
			return
		}
		next.ServeHTTP(w, r.WithContext(withHandlers(r.Context(), h)))
	})
}

// podNode is the node a pod is bound to, "" for a pod the index does not
// know (or not scheduled yet).
func (s *Server) podNode(namespace, name string) string {
	pd, err := s.cfg.Pods.Pods(namespace).Get(name)
	if err != nil {
		return "" // the lister of a cache fails with not found only
	}
	return pd.Spec.NodeName
}

// nodeRoute serves a node-level route on a node's own port, authorized
// against that node; the shared port cannot tell which node is meant.
// served: the route needs the node's handlers (a node this process serves).
func (s *Server) nodeRoute(next http.Handler, served bool) http.Handler {
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
		if !served {
			next.ServeHTTP(w, r)
			return
		}
		h, ok := s.cfg.Handlers(node)
		if !ok {
			http.Error(w, fmt.Sprintf("node %s is not served here", node), http.StatusNotFound)
			return
		}
		next.ServeHTTP(w, r.WithContext(withHandlers(r.Context(), h)))
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
