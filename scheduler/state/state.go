// Package state keeps what rbn-extender knows of the cluster, from two
// informers: every Node, parsed into a scheduler.NodeInfo once per change of
// its labels or annotations, and every bound, not yet terminated pod,
// indexed by node so that a scheduling call counts a node's pods without
// listing anything.
package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/scheduler"
)

const byNodeName = "nodeName"

// Config configures a Cache.
type Config struct {
	Client kubernetes.Interface
}

// Cache is the informer-fed view of nodes and pods. Its methods are safe for
// concurrent use.
type Cache struct {
	nodes, pods     cache.SharedIndexInformer
	nodeReg, podReg cache.ResourceEventHandlerRegistration
	mu              sync.RWMutex
	infos           map[string]*scheduler.NodeInfo
	// log is set by Run before the informers start, so before any handler runs.
	log *slog.Logger
}

// New builds a Cache; Run starts it.
func New(cfg Config) (*Cache, error) {
	if cfg.Client == nil {
		return nil, errors.New("state: a Kubernetes client is required")
	}
	c := &Cache{infos: map[string]*scheduler.NodeInfo{}, log: slog.New(slog.DiscardHandler)}
	c.nodes = coreinformers.NewNodeInformer(cfg.Client, 0, cache.Indexers{})
	// Only pods that hold a node: bound and not terminated. A pod that
	// terminates stops matching and the watch reports it deleted.
	selector := fields.AndSelectors(
		fields.OneTermNotEqualSelector("spec.nodeName", ""),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
		fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
	).String()
	c.pods = coreinformers.NewFilteredPodInformer(cfg.Client, metav1.NamespaceAll, 0,
		cache.Indexers{byNodeName: indexByNodeName},
		func(o *metav1.ListOptions) { o.FieldSelector = selector })
	// Keep only what the decisions read: a cluster's pods and node statuses
	// (image lists, conditions) would otherwise sit in memory for nothing.
	if err := c.nodes.SetTransform(slimNode); err != nil {
		return nil, fmt.Errorf("state: node transform: %w", err)
	}
	if err := c.pods.SetTransform(slimPod); err != nil {
		return nil, fmt.Errorf("state: pod transform: %w", err)
	}
	var err error
	c.nodeReg, err = c.nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.setNode(obj) },
		UpdateFunc: c.updateNode,
		DeleteFunc: c.deleteNode,
	})
	if err != nil {
		return nil, fmt.Errorf("state: node handler: %w", err)
	}
	// A handler with nothing to do, for its HasSynced.
	c.podReg, err = c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{})
	if err != nil {
		return nil, fmt.Errorf("state: pod handler: %w", err)
	}
	return c, nil
}

// Run runs the informers until ctx ends.
func (c *Cache) Run(ctx context.Context) {
	c.log = logging.FromContext(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); c.nodes.RunWithContext(ctx) }()
	go func() { defer wg.Done(); c.pods.RunWithContext(ctx) }()
	wg.Wait()
}

// Ready reports whether both informers have listed once and the nodes were
// parsed: before that, a decision would see an empty cluster.
func (c *Cache) Ready() bool { return c.nodeReg.HasSynced() && c.podReg.HasSynced() }

// Views appends to dst a view of each named node, in order.
func (c *Cache) Views(names []string, dst []scheduler.NodeView) []scheduler.NodeView {
	c.mu.RLock()
	for _, name := range names {
		dst = append(dst, scheduler.NodeView{Info: c.infos[name], Name: name})
	}
	c.mu.RUnlock()
	for i := len(dst) - len(names); i < len(dst); i++ {
		if dst[i].Info != nil && dst[i].Info.RemoteBuildNode {
			dst[i].BoundPods = c.boundPods(dst[i].Name)
		}
	}
	return dst
}

// View returns one node's view, for debugging.
func (c *Cache) View(name string) (scheduler.NodeView, bool) {
	v := c.Views([]string{name}, nil)[0]
	return v, v.Info != nil
}

func (c *Cache) boundPods(node string) int {
	objs, err := c.pods.GetIndexer().ByIndex(byNodeName, node)
	if err != nil {
		return 0
	}
	n := 0
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			n++
		}
	}
	return n
}

func (c *Cache) setNode(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	info := scheduler.NewNodeInfo(n)
	c.mu.Lock()
	old := c.infos[n.Name]
	c.infos[n.Name] = info
	c.mu.Unlock()
	// Say so once per change, not per scheduling call.
	if info.PublishedErr != nil && (old == nil || fmt.Sprint(old.PublishedErr) != info.PublishedErr.Error()) {
		c.log.Warn("host facts unusable: treating them as unknown", "node", n.Name, "err", info.PublishedErr)
	}
	if info.OverrideErr != nil && (old == nil || fmt.Sprint(old.OverrideErr) != info.OverrideErr.Error()) {
		c.log.Warn("host facts override unusable: node filtered out until fixed", "node", n.Name, "err", info.OverrideErr)
	}
}

// updateNode reparses a node only when what NodeInfo reads changed: rbn
// nodes' statuses change every heartbeat.
func (c *Cache) updateNode(oldObj, newObj any) {
	o, ok1 := oldObj.(*corev1.Node)
	n, ok2 := newObj.(*corev1.Node)
	if ok1 && ok2 && maps.Equal(o.Labels, n.Labels) && maps.Equal(o.Annotations, n.Annotations) {
		c.mu.RLock()
		_, have := c.infos[n.Name]
		c.mu.RUnlock()
		if have {
			return
		}
	}
	c.setNode(newObj)
}

func (c *Cache) deleteNode(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	c.mu.Lock()
	delete(c.infos, n.Name)
	c.mu.Unlock()
}

func indexByNodeName(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return nil, nil
	}
	return []string{p.Spec.NodeName}, nil
}

// slimNode keeps a Node's name, labels and the annotations rbn reads.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:            n.Name,
		UID:             n.UID,
		ResourceVersion: n.ResourceVersion,
		Labels:          n.Labels,
	}}
	for _, k := range []string{rbnv1.AnnotationHostFacts, rbnv1.AnnotationHostFactsOverride} {
		if v, ok := n.Annotations[k]; ok {
			if slim.Annotations == nil {
				slim.Annotations = map[string]string{}
			}
			slim.Annotations[k] = v
		}
	}
	return slim, nil
}

// slimPod keeps what counting a node's pods needs.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:              p.Name,
			Namespace:         p.Namespace,
			UID:               p.UID,
			ResourceVersion:   p.ResourceVersion,
			DeletionTimestamp: p.DeletionTimestamp,
		},
		Spec:   corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status: corev1.PodStatus{Phase: p.Status.Phase},
	}, nil
}
