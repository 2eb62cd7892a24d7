package kubeletapi

import (
	"context"
	"io"
	"net/http"
	"strconv"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/provider"
)

func (s *Server) resolve(namespace, pod string) (*provider.Pods, error) {
	p, ok := s.cfg.Resolver.Resolve(namespace, pod)
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on any node served here", namespace, pod)
	}
	return p, nil
}

type tailKey struct{}

// withTail records the raw tailLines query parameter: virtual-kubelet's
// parsed options cannot tell tailLines=0 from no tailLines.
func withTail(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tail := -1
		if v := r.URL.Query().Get("tailLines"); v != "" {
			if n, err := strconv.Atoi(v); err == nil && n >= 0 {
				tail = n
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tailKey{}, tail)))
	})
}

func (s *Server) containerLogs(ctx context.Context, namespace, pod, container string, opts vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	p, err := s.resolve(namespace, pod)
	if err != nil {
		return nil, err
	}
	tail, ok := ctx.Value(tailKey{}).(int)
	if !ok {
		tail = -1
	}
	return p.ContainerLogs(ctx, namespace, pod, container, opts, tail)
}

// pods answers /pods. One listener serves many nodes and the request does not
// say which node it is for, so the route refuses rather than mix nodes.
func (s *Server) pods(context.Context) ([]*corev1.Pod, error) {
	return nil, errdefs.InvalidInput("/pods is not served: this listener serves many nodes; list pods with the API server's spec.nodeName field selector")
}
