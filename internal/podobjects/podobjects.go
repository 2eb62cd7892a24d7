// Package podobjects keeps the Secrets and ConfigMaps that the pods of one
// node use, each watched on its own: a list and watch of one name in one
// namespace (field selector metadata.name), started when the first pod
// that names the object is tracked and stopped when the last one is
// forgotten. This is how the kubelet's watch-based Secret and ConfigMap
// managers read them, and the only way a node's identity may: the Node
// authorizer allows a node exactly the objects its pods reference, one
// name at a time, never a list of a namespace.
package podobjects

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// DefaultSyncTimeout bounds how long Get waits for an object's first list.
const DefaultSyncTimeout = 30 * time.Second

// ErrNotTracked: Get of an object no tracked pod names (a caller's bug:
// Track the pod first).
var ErrNotTracked = errors.New("no tracked pod names it")

// NotSyncedError: the object's first list did not complete in time; Last
// is the list's last error (often Forbidden for a moment after a pod is
// bound, until the Node authorizer has seen the binding).
type NotSyncedError struct {
	Kind, Namespace, Name string
	Last                  error
}

func (e *NotSyncedError) Error() string {
	msg := fmt.Sprintf("%s %s/%s not read yet", e.Kind, e.Namespace, e.Name)
	if e.Last != nil {
		msg += ": " + e.Last.Error()
	}
	return msg
}

func (e *NotSyncedError) Unwrap() error { return e.Last }

// listWatch lists and watches one object of a kind.
type listWatch struct {
	// client tells the reflector whether it may stream the first list
	// (a fake clientset may not).
	client any
	list   func(ctx context.Context, namespace string, opts metav1.ListOptions) (runtime.Object, error)
	watch  func(ctx context.Context, namespace string, opts metav1.ListOptions) (watch.Interface, error)
}

// Cache keeps the objects of one kind that the tracked pods name.
type Cache[T runtime.Object] struct {
	kind        string
	lw          listWatch
	newObject   func() T
	syncTimeout time.Duration

	mu    sync.Mutex
	ctx   context.Context // what every watch runs under
	items map[types.NamespacedName]*watched
	pods  map[types.UID][]types.NamespacedName
}

type watched struct {
	refs     int
	informer cache.SharedIndexInformer
	cancel   context.CancelFunc
	mu       sync.Mutex
	last     error // the last list or watch error
}

// Options tune a Cache.
type Options struct {
	// SyncTimeout: DefaultSyncTimeout when 0.
	SyncTimeout time.Duration
}

// NewSecrets keeps Secrets, read with client; the watches run until ctx ends.
func NewSecrets(ctx context.Context, client kubernetes.Interface, o Options) *Cache[*corev1.Secret] {
	return newCache(ctx, "Secret", func() *corev1.Secret { return &corev1.Secret{} }, listWatch{
		client: client,
		list: func(ctx context.Context, ns string, opts metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Secrets(ns).List(ctx, opts)
		},
		watch: func(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Secrets(ns).Watch(ctx, opts)
		},
	}, o)
}

// NewConfigMaps keeps ConfigMaps, read with client; the watches run until ctx ends.
func NewConfigMaps(ctx context.Context, client kubernetes.Interface, o Options) *Cache[*corev1.ConfigMap] {
	return newCache(ctx, "ConfigMap", func() *corev1.ConfigMap { return &corev1.ConfigMap{} }, listWatch{
		client: client,
		list: func(ctx context.Context, ns string, opts metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().ConfigMaps(ns).List(ctx, opts)
		},
		watch: func(ctx context.Context, ns string, opts metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().ConfigMaps(ns).Watch(ctx, opts)
		},
	}, o)
}

func newCache[T runtime.Object](ctx context.Context, kind string, newObject func() T, lw listWatch, o Options) *Cache[T] {
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	return &Cache[T]{
		kind: kind, lw: lw, newObject: newObject, syncTimeout: o.SyncTimeout,
		ctx: ctx, items: map[types.NamespacedName]*watched{}, pods: map[types.UID][]types.NamespacedName{},
	}
}

// Track makes the objects of namespace named in names the ones pod uid
// uses (replacing what it named before): watches start for the new ones,
// and stop for those no tracked pod names any more.
func (c *Cache[T]) Track(uid types.UID, namespace string, names []string) {
	keys := make([]types.NamespacedName, 0, len(names))
	for _, n := range names {
		keys = append(keys, types.NamespacedName{Namespace: namespace, Name: n})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.pods[uid]
	for _, k := range keys {
		c.refLocked(k)
	}
	for _, k := range old {
		c.unrefLocked(k)
	}
	if len(keys) == 0 {
		delete(c.pods, uid)
		return
	}
	c.pods[uid] = keys
}

// Forget drops pod uid: the watches of objects no other pod names stop.
func (c *Cache[T]) Forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.pods[uid] {
		c.unrefLocked(k)
	}
	delete(c.pods, uid)
}

// Watched is the number of objects watched now.
func (c *Cache[T]) Watched() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.items)
}

func (c *Cache[T]) refLocked(k types.NamespacedName) {
	if w := c.items[k]; w != nil {
		w.refs++
		return
	}
	w := &watched{refs: 1}
	selector := fields.OneTermEqualSelector("metadata.name", k.Name).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			opts.FieldSelector = selector
			return c.lw.list(ctx, k.Namespace, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			opts.FieldSelector = selector
			return c.lw.watch(ctx, k.Namespace, opts)
		},
	}
	w.informer = cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, c.lw.client), c.newObject(), cache.SharedIndexInformerOptions{})
	_ = w.informer.SetWatchErrorHandlerWithContext(func(_ context.Context, _ *cache.Reflector, err error) {
		w.mu.Lock()
		w.last = err
		w.mu.Unlock()
	})
	ctx, cancel := context.WithCancel(c.ctx)
	w.cancel = cancel
	c.items[k] = w
	go w.informer.RunWithContext(ctx)
}

func (c *Cache[T]) unrefLocked(k types.NamespacedName) {
	w := c.items[k]
	if w == nil {
		return
	}
	if w.refs--; w.refs > 0 {
		return
	}
	w.cancel()
	delete(c.items, k)
}

// Get returns the object namespace/name as last seen, waiting for its first
// list (at most the sync timeout, or until ctx ends): a NotFound error when
// it does not exist, a *NotSyncedError when it could not be read yet,
// ErrNotTracked when no tracked pod names it.
func (c *Cache[T]) Get(ctx context.Context, namespace, name string) (T, error) {
	var zero T
	k := types.NamespacedName{Namespace: namespace, Name: name}
	c.mu.Lock()
	w := c.items[k]
	c.mu.Unlock()
	if w == nil {
		return zero, fmt.Errorf("%s %s: %w", c.kind, k, ErrNotTracked)
	}
	if !w.informer.HasSynced() {
		// Woken by the first list's end, not a poll: a pod's first
		// sync waits here for the objects it names, on the path of
		// every pod start (a 50 ms poll cost 56 ms of each start).
		wctx, cancel := context.WithTimeout(ctx, c.syncTimeout)
		defer cancel()
		select {
		case <-w.informer.HasSyncedChecker().Done():
		case <-wctx.Done():
			w.mu.Lock()
			last := w.last
			w.mu.Unlock()
			if last == nil {
				last = wctx.Err()
			}
			return zero, &NotSyncedError{Kind: c.kind, Namespace: namespace, Name: name, Last: last}
		}
	}
	obj, exists, err := w.informer.GetStore().GetByKey(k.String())
	if err != nil {
		return zero, err
	}
	if !exists {
		return zero, apierrors.NewNotFound(corev1.Resource(resourceOf(c.kind)), name)
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("%s %s: the cache holds a %T", c.kind, k, obj)
	}
	return t, nil
}

func resourceOf(kind string) string {
	switch kind {
	case "Secret":
		return "secrets"
	case "ConfigMap":
		return "configmaps"
	}
	return kind
}
