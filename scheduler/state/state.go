// Package state keeps what rbn-extender knows of the cluster, from four
// informers: every Node, parsed into a scheduler.NodeInfo once per change of
// its labels or annotations; every bound, not yet terminated pod, indexed by
// node so that a scheduling call counts a node's pods without listing
// anything; and every PersistentVolumeClaim and StorageClass, slimmed to
// what tells how much of a host's volume space a pod's claims will take
// (scheduler.VolumeBytes).
package state

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	coreinformers "k8s.io/client-go/informers/core/v1"
	storageinformers "k8s.io/client-go/informers/storage/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
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

// Cache is the informer-fed view of nodes, pods, claims and storage classes.
// Its methods are safe for concurrent use.
type Cache struct {
	nodes, pods, claims, classes        cache.SharedIndexInformer
	nodeReg, podReg, claimReg, classReg cache.ResourceEventHandlerRegistration
	claimLister                         corelisters.PersistentVolumeClaimLister
	classLister                         storagelisters.StorageClassLister
	mu                                  sync.RWMutex
	infos                               map[string]*scheduler.NodeInfo
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
	// Every claim: the API cannot select unbound ones (no field selector
	// on spec.volumeName), and a claim is small once slimmed.
	c.claims = coreinformers.NewPersistentVolumeClaimInformer(cfg.Client, metav1.NamespaceAll, 0, cache.Indexers{})
	c.classes = storageinformers.NewStorageClassInformer(cfg.Client, 0, cache.Indexers{})
	c.claimLister = corelisters.NewPersistentVolumeClaimLister(c.claims.GetIndexer())
	c.classLister = storagelisters.NewStorageClassLister(c.classes.GetIndexer())
	if err := c.claims.SetTransform(slimClaim); err != nil {
		return nil, fmt.Errorf("state: claim transform: %w", err)
	}
	if err := c.classes.SetTransform(slimClass); err != nil {
		return nil, fmt.Errorf("state: storage class transform: %w", err)
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
	// Handlers with nothing to do, for their HasSynced.
	c.podReg, err = c.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{})
	if err != nil {
		return nil, fmt.Errorf("state: pod handler: %w", err)
	}
	c.claimReg, err = c.claims.AddEventHandler(cache.ResourceEventHandlerFuncs{})
	if err != nil {
		return nil, fmt.Errorf("state: claim handler: %w", err)
	}
	c.classReg, err = c.classes.AddEventHandler(cache.ResourceEventHandlerFuncs{})
	if err != nil {
		return nil, fmt.Errorf("state: storage class handler: %w", err)
	}
	return c, nil
}

// Run runs the informers until ctx ends.
func (c *Cache) Run(ctx context.Context) {
	c.log = logging.FromContext(ctx)
	var wg sync.WaitGroup
	for _, inf := range []cache.SharedIndexInformer{c.nodes, c.pods, c.claims, c.classes} {
		wg.Add(1)
		go func() { defer wg.Done(); inf.RunWithContext(ctx) }()
	}
	wg.Wait()
}

// Ready reports whether every informer has listed once and the nodes were
// parsed: before that, a decision would see an empty cluster, or pods
// whose claims it does not know.
func (c *Cache) Ready() bool {
	return c.nodeReg.HasSynced() && c.podReg.HasSynced() && c.claimReg.HasSynced() && c.classReg.HasSynced()
}

// Claim returns a PersistentVolumeClaim as the cache holds it (slimmed:
// its class, volume name and storage request); false when not in the
// cache. The caller must not modify it.
func (c *Cache) Claim(namespace, name string) (*corev1.PersistentVolumeClaim, bool) {
	pvc, err := c.claimLister.PersistentVolumeClaims(namespace).Get(name)
	return pvc, err == nil
}

// Provisioner returns the provisioner of a StorageClass; false when the
// class is not in the cache.
func (c *Cache) Provisioner(storageClass string) (string, bool) {
	sc, err := c.classLister.Get(storageClass)
	if err != nil {
		return "", false
	}
	return sc.Provisioner, true
}

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

// slimClaim keeps what scheduler.VolumeBytes reads of a claim.
func slimClaim(obj any) (any, error) {
	c, ok := obj.(*corev1.PersistentVolumeClaim)
	if !ok {
		return obj, nil
	}
	slim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:            c.Name,
			Namespace:       c.Namespace,
			UID:             c.UID,
			ResourceVersion: c.ResourceVersion,
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: c.Spec.StorageClassName,
			VolumeName:       c.Spec.VolumeName,
		},
	}
	if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		slim.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: q}
	}
	return slim, nil
}

// slimClass keeps a StorageClass's name and provisioner.
func slimClass(obj any) (any, error) {
	sc, ok := obj.(*storagev1.StorageClass)
	if !ok {
		return obj, nil
	}
	return &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{
			Name:            sc.Name,
			UID:             sc.UID,
			ResourceVersion: sc.ResourceVersion,
		},
		Provisioner: sc.Provisioner,
	}, nil
}
