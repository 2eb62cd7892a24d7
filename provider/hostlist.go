package provider

import (
	"context"
	"sync"
	"time"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// hostListTimeout bounds one shared list of a host's objects: it runs on
// when the caller that asked for it gives up, for the others waiting.
const hostListTimeout = 2 * time.Minute

// hostList shares lists of one kind of a host's podman objects (its
// containers, pods, volumes) among its nodes: their relists and orphan
// sweeps, and the cgroup reader. Podman's lists read every object's
// configuration from its state database whatever the filter, and a
// container list syncs the state of those it returns: a list per node, a
// dozen nodes per host, read the whole database a dozen times per period.
// A list younger than the age a caller accepts is given as it is; else one
// list runs for every caller that asks meanwhile.
type hostList[T any] struct {
	list func(context.Context) ([]T, error)
	now  func() time.Time

	mu      sync.Mutex
	kept    []T
	at      time.Time // when the kept list was asked for; zero: none
	pending *hostListRead[T]
}

// hostListRead is one list and, once done is closed, its result.
type hostListRead[T any] struct {
	done  chan struct{}
	asked time.Time
	list  []T
	err   error
}

func newHostList[T any](list func(context.Context) ([]T, error), now func() time.Time) *hostList[T] {
	return &hostList[T]{list: list, now: now}
}

// get returns a list asked for less than maxAge ago, or why none could be
// made within ctx. Lists are shared: callers must not change them.
func (l *hostList[T]) get(ctx context.Context, maxAge time.Duration) ([]T, error) {
	list, _, err := l.wait(ctx, func(asked time.Time) bool { return l.now().Sub(asked) < maxAge })
	return list, err
}

// since returns a list asked for at t or later, and when it was asked for.
func (l *hostList[T]) since(ctx context.Context, t time.Time) ([]T, time.Time, error) {
	return l.wait(ctx, func(asked time.Time) bool { return !asked.Before(t) })
}

// last returns the list kept, whatever its age (nil and the zero time
// before the first).
func (l *hostList[T]) last() ([]T, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kept, l.at
}

// wait returns a list whose asking time fresh accepts: the one kept, the
// one in flight, or the next one. A list asked for once the caller waits is
// as fresh as any: it is taken whatever fresh says.
func (l *hostList[T]) wait(ctx context.Context, fresh func(asked time.Time) bool) ([]T, time.Time, error) {
	start := l.now()
	for {
		l.mu.Lock()
		if !l.at.IsZero() && fresh(l.at) {
			kept, at := l.kept, l.at
			l.mu.Unlock()
			return kept, at, nil
		}
		r := l.pending
		if r == nil {
			r = &hostListRead[T]{done: make(chan struct{}), asked: l.now()}
			l.pending = r
			go l.fill(context.WithoutCancel(ctx), r)
		}
		l.mu.Unlock()
		select {
		case <-r.done:
		case <-ctx.Done():
			return nil, time.Time{}, ctx.Err()
		}
		if r.err != nil {
			return nil, time.Time{}, r.err
		}
		if fresh(r.asked) || !r.asked.Before(start) {
			return r.list, r.asked, nil
		}
		// It was asked for too early: the next one.
	}
}

func (l *hostList[T]) fill(ctx context.Context, r *hostListRead[T]) {
	ctx, cancel := context.WithTimeout(ctx, hostListTimeout)
	defer cancel()
	list, err := l.list(ctx)
	l.mu.Lock()
	r.list, r.err = list, err
	if err == nil && !r.asked.Before(l.at) {
		l.kept, l.at = list, r.asked
	}
	l.pending = nil
	l.mu.Unlock()
	close(r.done)
}

// nodeContainers returns the containers of node (those labelled with its
// name) from a list of the host's containers asked for less than maxAge
// ago.
func (h *Host) nodeContainers(ctx context.Context, node string, maxAge time.Duration) ([]podman.ContainerSummary, error) {
	all, err := h.containers.get(ctx, maxAge)
	if err != nil {
		return nil, err
	}
	return ofNode(all, node, func(c podman.ContainerSummary) map[string]string { return c.Labels }), nil
}

// ofNode are the items labelled with node's name.
func ofNode[T any](items []T, node string, labels func(T) map[string]string) []T {
	var out []T
	for _, x := range items {
		if labels(x)[pod.LabelNode] == node {
			out = append(out, x)
		}
	}
	return out
}

// nodeObjectLists is a node's view of its host's shared lists, for its
// orphan sweep (removeLabelled): the pods, containers and volumes
// labelled with its name from lists asked for less than maxAge ago; its
// removals go to podman. The labels a caller gives are the node's.
type nodeObjectLists struct {
	podRuntime
	host   *Host
	node   string
	maxAge time.Duration
}

func (n nodeObjectLists) ListPods(ctx context.Context, _ map[string]string) ([]podman.PodSummary, error) {
	all, err := n.host.pods.get(ctx, n.maxAge)
	return ofNode(all, n.node, func(p podman.PodSummary) map[string]string { return p.Labels }), err
}

func (n nodeObjectLists) ListContainers(ctx context.Context, _ map[string]string) ([]podman.ContainerSummary, error) {
	return n.host.nodeContainers(ctx, n.node, n.maxAge)
}

func (n nodeObjectLists) ListVolumes(ctx context.Context, _ map[string]string) ([]podman.Volume, error) {
	all, err := n.host.volumes.get(ctx, n.maxAge)
	return ofNode(all, n.node, func(v podman.Volume) map[string]string { return v.Labels }), err
}
