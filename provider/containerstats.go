package provider

import (
	"context"
	"sync"
	"time"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// containerStatsMaxAge is how long one reading of a host's container
// figures answers every node of the host and every endpoint that asks:
// kubelet's cAdvisor housekeeping interval, so figures are as old at most
// as a kubelet's /metrics/resource, /metrics/cadvisor and /stats/summary
// give them. Scrapers that read every node at once (Prometheus's kubelet
// job reads two of those paths per node, metrics-server a third) then
// cost one podman stats read per host, however many nodes and pods it has.
const containerStatsMaxAge = 10 * time.Second

// containerStatsStaleWait is how long a caller waits for a reading asked
// for after a container started or ended before it is given the one kept
// from before. A host's stats read takes long when it runs hundreds of
// containers (podman reads each one's cgroup and runtime state: 20-60 s at
// 250 pods on a loaded 2-core host, make bench's scale section), longer
// than Prometheus's and metrics-server's 10 s timeout for a scrape.
const containerStatsStaleWait = 5 * time.Second

// containerStatsMaxStale is the oldest reading a caller is given while a
// newer one is read: past it, the caller waits for the read.
const containerStatsMaxStale = 2 * time.Minute

// containerStatsReadTimeout bounds a shared read: it runs on when the
// caller that started it gives up, for the callers waiting on it, and for
// the next ones.
const containerStatsReadTimeout = 2 * time.Minute

// containerStatsCache shares readings of a host's running containers'
// figures, as kubelet's cAdvisor keeps its housekeeping's. A reading
// younger than maxAge is given as it is, unless a container of the host
// started or ended since it was asked for (changed). Otherwise a read is
// asked for, one at a time per host (a change during a read asks for one
// more after it), and the caller is given:
//   - the kept reading at once, when it is older than maxAge but no older
//     than containerStatsMaxStale and nothing changed since (the read goes
//     on and its reading is kept for the next callers);
//   - after a change, the new reading, or the kept one if the new one
//     takes longer than containerStatsStaleWait;
//   - with no reading kept, or one older than containerStatsMaxStale, the
//     new reading once it comes.
//
// So a pod reported Running is in every reading given after that (as
// virtual-kubelet's e2e suite expects of /stats/summary) unless the host
// takes longer than containerStatsStaleWait to read; a host at rest is
// read once per maxAge however many ask; a slow host answers scrapes with
// its last reading instead of timing them out, and is never read twice at
// once. A failed read is not kept: every caller waiting on it gets its
// error, the next caller reads again. Readings are shared: callers must
// not change them.
type containerStatsCache struct {
	read   func(context.Context) ([]podman.ContainerStats, error)
	maxAge time.Duration
	now    func() time.Time

	mu       sync.Mutex
	stats    []podman.ContainerStats
	at       time.Time // when the kept reading was asked for; zero: none kept
	statsGen uint64    // gen when it was asked for
	gen      uint64    // counts the changes of the host's containers
	pending  *containerStatsRead
	// next is the read asked for after a change while pending ran: it
	// starts when pending ends.
	next *containerStatsRead
}

// containerStatsRead is one read and, once done is closed, its result.
type containerStatsRead struct {
	gen   uint64          // the cache's when the read was asked for
	ctx   context.Context // detached from the caller's cancellation; bounded when started
	done  chan struct{}
	stats []podman.ContainerStats
	err   error
}

func newContainerStatsCache(read func(context.Context) ([]podman.ContainerStats, error), maxAge time.Duration, now func() time.Time) *containerStatsCache {
	return &containerStatsCache{read: read, maxAge: maxAge, now: now}
}

// get returns a reading as containerStatsCache says, or why none could be
// read within ctx.
func (c *containerStatsCache) get(ctx context.Context) ([]podman.ContainerStats, error) {
	c.mu.Lock()
	age := c.now().Sub(c.at)
	kept := !c.at.IsZero()
	if kept && age < c.maxAge && c.statsGen == c.gen {
		stats := c.stats
		c.mu.Unlock()
		return stats, nil
	}
	r := c.readLocked(ctx)
	stale := c.stats
	var giveStale <-chan time.Time
	if kept && age <= containerStatsMaxStale {
		if c.statsGen == c.gen {
			c.mu.Unlock()
			return stale, nil
		}
		t := time.NewTimer(containerStatsStaleWait)
		defer t.Stop()
		giveStale = t.C
	}
	c.mu.Unlock()
	select {
	case <-r.done:
		return r.stats, r.err
	case <-giveStale:
		return stale, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// readLocked returns a read asked for at the current gen: the one in
// flight if it is, else the next one, queued behind it; it starts one when
// none is in flight. Not the caller's cancellation: others may wait on it.
func (c *containerStatsCache) readLocked(ctx context.Context) *containerStatsRead {
	switch {
	case c.pending == nil:
		c.pending = c.newRead(ctx)
		c.start(c.pending)
		return c.pending
	case c.pending.gen == c.gen:
		return c.pending
	case c.next == nil:
		// The read in flight was asked for before a change: it may miss it.
		c.next = c.newRead(ctx)
	default:
		// Queued and not started: it reads after every change so far.
		c.next.gen = c.gen
	}
	return c.next
}

func (c *containerStatsCache) newRead(ctx context.Context) *containerStatsRead {
	return &containerStatsRead{gen: c.gen, ctx: context.WithoutCancel(ctx), done: make(chan struct{})}
}

func (c *containerStatsCache) start(r *containerStatsRead) {
	go func() {
		ctx, cancel := context.WithTimeout(r.ctx, containerStatsReadTimeout)
		defer cancel()
		c.fill(ctx, r)
	}()
}

// fill reads, keeps the reading if there is one (reads run one at a time:
// it is the newest), wakes r's waiters and starts the next read if one was
// asked for. The reading's age counts from before the read, so that it is
// never given out as fresh when older than maxAge.
func (c *containerStatsCache) fill(ctx context.Context, r *containerStatsRead) {
	asked := c.now()
	stats, err := c.read(ctx)
	c.mu.Lock()
	r.stats, r.err = stats, err
	if err == nil {
		c.stats, c.at, c.statsGen = stats, asked, r.gen
	}
	if c.pending == r {
		c.pending, c.next = c.next, nil
		if c.pending != nil {
			c.start(c.pending)
		}
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
}

// nodeContainerStats returns podman's figures of node's running containers
// (those labelled with its name) from the host's shared reading.
func (h *Host) nodeContainerStats(ctx context.Context, node string) ([]podman.ContainerStats, error) {
	all, err := h.containerStats.get(ctx)
	if err != nil {
		return nil, err
	}
	return ofNode(all, node, func(c podman.ContainerStats) map[string]string { return c.Labels }), nil
}

// containersChanged says that a container of the host started or ended
// (a node's podman event stream saw it): the stats endpoints read anew.
func (h *Host) containersChanged() {
	if h != nil && h.containerStats != nil {
		h.containerStats.changed()
	}
}
