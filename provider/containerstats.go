package provider

import (
	"context"
	"sync"
	"time"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// containerStatsMaxAge is how long one reading of a host's container
// figures answers every node of the host and every endpoint that asks:
// kubelet's cAdvisor housekeeping interval, so figures are as old at most
// as a kubelet's /metrics/resource, /metrics/cadvisor and /stats/summary
// give them. Scrapers that read every node at once (Prometheus's kubelet
// job reads two of those paths per node, metrics-server a third) then
// cost one podman stats read per host, however many nodes and pods it has.
const containerStatsMaxAge = 10 * time.Second

// containerStatsReadTimeout bounds a shared read: it runs on when the
// caller that started it gives up, for the callers waiting on it.
const containerStatsReadTimeout = 30 * time.Second

// containerStatsCache shares readings of a host's running containers'
// figures: a reading younger than maxAge is given as it is, unless a
// container of the host started or ended since it was asked for (changed);
// otherwise the callers wait for one read together. So a pod reported
// Running is in every reading given after that (as virtual-kubelet's e2e
// suite expects of /stats/summary), while a host at rest is read once per
// maxAge however many ask. A failed read is not kept: every caller waiting
// on it gets its error, the next caller reads again. Readings are shared:
// callers must not change them.
type containerStatsCache struct {
	read   func(context.Context) ([]podman.ContainerStats, error)
	maxAge time.Duration
	now    func() time.Time

	mu      sync.Mutex
	stats   []podman.ContainerStats
	at      time.Time // when the kept reading was asked for; zero: none kept
	gen     uint64    // counts the changes of the host's containers
	pending *containerStatsRead
}

// containerStatsRead is one read in flight and, once done is closed, its
// result.
type containerStatsRead struct {
	gen   uint64 // the cache's when the read was asked for
	done  chan struct{}
	stats []podman.ContainerStats
	err   error
}

func newContainerStatsCache(read func(context.Context) ([]podman.ContainerStats, error), maxAge time.Duration, now func() time.Time) *containerStatsCache {
	return &containerStatsCache{read: read, maxAge: maxAge, now: now}
}

// get returns a reading at most maxAge old, reading one if needed, or why
// none could be read within ctx.
func (c *containerStatsCache) get(ctx context.Context) ([]podman.ContainerStats, error) {
	c.mu.Lock()
	if !c.at.IsZero() && c.now().Sub(c.at) < c.maxAge {
		stats := c.stats
		c.mu.Unlock()
		return stats, nil
	}
	r := c.pending
	if r == nil || r.gen != c.gen {
		// None in flight, or one asked for before a change: it may miss it.
		r = &containerStatsRead{gen: c.gen, done: make(chan struct{})}
		c.pending = r
		// Not the caller's cancellation: others may wait on this read.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), containerStatsReadTimeout)
		go func() {
			defer cancel()
			c.fill(rctx, r)
		}()
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.stats, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fill reads, keeps the reading if there is one, and wakes r's waiters.
// The reading's age counts from before the read, so that it is never
// given out older than maxAge.
func (c *containerStatsCache) fill(ctx context.Context, r *containerStatsRead) {
	asked := c.now()
	stats, err := c.read(ctx)
	c.mu.Lock()
	r.stats, r.err = stats, err
	if err == nil && r.gen == c.gen {
		c.stats, c.at = stats, asked
	}
	if c.pending == r {
		c.pending = nil
	}
	c.mu.Unlock()
	close(r.done)
}

// changed says that a container of the host started or ended: the kept
// reading, and a read asked for before, may not show it.
func (c *containerStatsCache) changed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	c.stats, c.at = nil, time.Time{}
}

// nodeContainerStats returns podman's figures of node's running containers
// (those labelled with its name) from the host's shared reading.
func (h *Host) nodeContainerStats(ctx context.Context, node string) ([]podman.ContainerStats, error) {
	all, err := h.containerStats.get(ctx)
	if err != nil {
		return nil, err
	}
	var out []podman.ContainerStats
	for _, c := range all {
		if c.Labels[pod.LabelNode] == node {
			out = append(out, c)
		}
	}
	return out, nil
}

// containersChanged says that a container of the host started or ended
// (a node's podman event stream saw it): the stats endpoints read anew.
func (h *Host) containersChanged() {
	if h != nil && h.containerStats != nil {
		h.containerStats.changed()
	}
}
