package nodeidentity

import (
	"k8s.io/apimachinery/pkg/api/errors"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// ListerNodes answers Nodes from informers' caches.
type ListerNodes struct {
	// RemoteBuildNodes holds the RemoteBuildNodes (their metadata is
	// enough), keyed by name.
	RemoteBuildNodes cache.Store
	Nodes            corev1listers.NodeLister
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
