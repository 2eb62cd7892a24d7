package nodeidentity

import (
	"net"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/errors"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/nodeservice"
)

// ListerNodes answers Nodes from informers' caches.
type ListerNodes struct {
	// RemoteBuildNodes holds the RemoteBuildNodes (their metadata is
	// enough), keyed by name.
	RemoteBuildNodes cache.Store
	Nodes            corev1listers.NodeLister
	// Services lists rbn's namespace's Services, where each node's own
	// is; nil: no node has a ClusterIP known (serving certificates are
	// denied).
	Services corev1listers.ServiceNamespaceLister
}

func (l ListerNodes) RemoteBuildNode(name string) bool {
	_, exists, err := l.RemoteBuildNodes.GetByKey(name)
	return err == nil && exists
}

func (l ListerNodes) ServedNode(name string) (exists, served bool) {
	n, err := l.Nodes.Get(name)
	if errors.IsNotFound(err) {
		return false, false
	}
	if err != nil {
		return true, false // unknown: not served, to be safe
	}
	return true, n.Labels[rbnv1.LabelRemoteBuildNode] == "true"
}

func (l ListerNodes) ServiceIP(name string) (ip string, ok bool) {
	if l.Services == nil {
		return "", false
	}
	svc, err := l.Services.Get(nodeservice.Name(name))
	if err != nil {
		return "", false
	}
	// A headless Service ("None") or one whose address is not allocated
	// yet gives the node no address.
	ip = svc.Spec.ClusterIP
	if ip == corev1.ClusterIPNone || net.ParseIP(ip) == nil {
		return "", false
	}
	return ip, true
}
