package kubeletapi

import (
	"sync"

	"github.com/remote-build-nodes/rbn/provider"
)

// statsCache keeps one stats collector per node: a collector remembers its
// previous reading to turn cumulative CPU time into a rate.
type statsCache struct {
	mu sync.Mutex
	m  map[string]statsEntry
}

type statsEntry struct {
	pods *provider.Pods
	c    *provider.StatsCollector
}

func newStatsCache() *statsCache { return &statsCache{m: map[string]statsEntry{}} }

// collector returns p's collector, a new one when the node's runtime was
// replaced (its spec changed) since.
func (c *statsCache) collector(p *provider.Pods) *provider.StatsCollector {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[p.NodeName()]
	if !ok || e.pods != p {
		e = statsEntry{pods: p, c: provider.NewStatsCollector(p)}
		c.m[p.NodeName()] = e
	}
	return e.c
}

func (c *statsCache) forget(node string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, node)
}
