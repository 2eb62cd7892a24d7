package scheduler

import (
	"time"

	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// NodeInfo is what the extender keeps of a Node between its changes: parsed
// once per Node update, read by every scheduling call. It is immutable once
// built, so a cache may hand the same value to concurrent calls.
type NodeInfo struct {
	Name string
	// RemoteBuildNode: the node carries rbn.dev/remote-build-node=true.
	// Every other node is left alone.
	RemoteBuildNode bool
	// Draining: the node carries rbn.dev/draining=true.
	Draining bool
	// Arch is the node's kubernetes.io/arch label.
	Arch string

	// Published is nil when the node has no usable rbn.dev/host-facts.
	Published *Published
	// PublishedErr says why a present annotation was not usable.
	PublishedErr error
	// Override is nil when there is none or it is unusable.
	Override *Override
	// OverrideErr says why a present override was not usable.
	OverrideErr error
}

// NewNodeInfo reads a Node.
func NewNodeInfo(n *corev1.Node) *NodeInfo {
	info := &NodeInfo{
		Name:            n.Name,
		RemoteBuildNode: n.Labels[rbnv1.LabelRemoteBuildNode] == "true",
		Draining:        n.Labels[rbnv1.LabelDraining] == "true",
		Arch:            n.Labels[corev1.LabelArchStable],
	}
	if !info.RemoteBuildNode {
		return info
	}
	if v, ok := n.Annotations[rbnv1.AnnotationHostFacts]; ok {
		info.Published, info.PublishedErr = ParsePublished(v)
	}
	if v, ok := n.Annotations[rbnv1.AnnotationHostFactsOverride]; ok {
		info.Override, info.OverrideErr = ParseOverride(v)
	}
	return info
}

// Facts resolves the node's facts at now (see Resolve).
func (n *NodeInfo) Facts(now time.Time, maxAge time.Duration) Facts {
	return Resolve(n.Published, n.Override, now, maxAge)
}

// NodeView is one candidate node as a decision sees it.
type NodeView struct {
	// Info is nil for a node the extender has not seen (yet): such a node is
	// treated as a node rbn does not manage.
	Info *NodeInfo
	Name string
	// BoundPods counts pods with spec.nodeName set to this node that have
	// not terminated (Succeeded/Failed): running ones and ones bound but not
	// started yet.
	BoundPods int
}

func (v *NodeView) managed() bool { return v.Info != nil && v.Info.RemoteBuildNode }
