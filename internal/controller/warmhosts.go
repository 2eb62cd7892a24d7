package controller

import (
	"fmt"
	"slices"
	"sync"

	"github.com/remote-build-nodes/rbn/provider"
)

// warmHosts keeps the build host of every valid RemoteBuildNode connected
// and probed, whether this replica serves the node or stands by for it. A
// takeover then finds the host Ready with its facts read, instead of
// dialing it and reading its facts while the node waits (docs/ha.md). A
// standby host only connects and reads: nothing is written, on the host or
// about the node, by a replica that does not hold the node's Lease.
type warmHosts struct {
	pool *provider.HostPool

	mu     sync.Mutex
	byNode map[string]warmHost
}

type warmHost struct {
	hash    string // the node's configuration the host was acquired for
	host    *provider.Host
	release func()
}

func newWarmHosts(pool *provider.HostPool) *warmHosts {
	return &warmHosts{pool: pool, byNode: map[string]warmHost{}}
}

// keep holds node's host, configured by cfg (hash names that
// configuration), releasing the one held for an earlier configuration.
func (w *warmHosts) keep(node, hash string, cfg provider.HostConfig) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	old, ok := w.byNode[node]
	if ok && old.hash == hash {
		return nil
	}
	host, release, err := w.pool.Acquire(cfg)
	if err != nil {
		return fmt.Errorf("host %s: %w", cfg.Name, err)
	}
	w.byNode[node] = warmHost{hash: hash, host: host, release: release}
	if ok {
		old.release() // after the new one: a host both name stays up
	}
	return nil
}

// drop releases node's host, if held: the node is gone or invalid.
func (w *warmHosts) drop(node string) {
	w.mu.Lock()
	h, ok := w.byNode[node]
	delete(w.byNode, node)
	w.mu.Unlock()
	if ok {
		h.release()
	}
}

// connecting lists, sorted, the nodes whose host is still in its first
// connection attempt: neither Ready nor definitely failed (see hostSettled).
func (w *warmHosts) connecting() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var nodes []string
	for node, h := range w.byNode {
		if _, health := h.host.Snapshot(); health.Reason == provider.ReasonConnecting {
			nodes = append(nodes, node)
		}
	}
	slices.Sort(nodes)
	return nodes
}

// dropAll releases every host (shutdown).
func (w *warmHosts) dropAll() {
	w.mu.Lock()
	held := w.byNode
	w.byNode = map[string]warmHost{}
	w.mu.Unlock()
	for _, h := range held {
		h.release()
	}
}
