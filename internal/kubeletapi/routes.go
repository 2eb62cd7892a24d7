package kubeletapi

import (
	"context"
	"io"

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

func (s *Server) containerLogs(ctx context.Context, namespace, pod, container string, opts vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	p, err := s.resolve(namespace, pod)
	if err != nil {
		return nil, err
	}
	return p.ContainerLogs(ctx, namespace, pod, container, opts)
}

// pods answers /pods. One listener serves many nodes and the request does not
// say which node it is for, so the route refuses rather than mix nodes.
func (s *Server) pods(context.Context) ([]*corev1.Pod, error) {
	return nil, errdefs.InvalidInput("/pods is not served: this listener serves many nodes; list pods with the API server's spec.nodeName field selector")
}
