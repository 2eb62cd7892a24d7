package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// Ownership says which RemoteBuildNodes this replica serves: the per-node
// Leases of internal/sharding (its *Elector), see docs/ha.md. A replica
// serves a node, and writes anything about it (its RemoteBuildNode's status
// and finalizer, its Node, its pods, its host), only while it holds the
// node's Lease.
type Ownership interface {
	// Contend makes the replica try to hold node's Lease from now on.
	Contend(node string) error
	// Lost is closed when the current hold of node ends; already closed
	// when the node is not held.
	Lost(node string) <-chan struct{}
	// Release stops contending for node, giving its Lease up if held.
	Release(ctx context.Context, node string) error
	// ReleaseAll releases every node (orderly shutdown).
	ReleaseAll(ctx context.Context) error
}

// releaseTimeout bounds the Lease writes of an orderly shutdown.
const releaseTimeout = 5 * time.Second

// held says whether lost (from Ownership.Lost) is still open.
func held(lost <-chan struct{}) bool {
	select {
	case <-lost:
		return false
	default:
		return true
	}
}

// watchLost stops rt the moment the hold it was started under ends (another
// replica may serve the node a few seconds later), without waiting for the
// next reconcile, ends the node's kubelet API sessions (their clients
// reconnect through the apiserver to the replica serving the node now),
// and has the node reconciled again.
func (c *Controller) watchLost(ctx context.Context, name string, rt *nodeRuntime, lost <-chan struct{}) {
	select {
	case <-rt.Done():
	case <-lost:
		log := logging.FromContext(ctx)
		log.Warn("node lease lost: no longer serving the node")
		c.stopRuntimeIf(name, rt)
		c.mu.Lock()
		ports := c.ports
		c.mu.Unlock()
		if ports != nil {
			if n := ports.EndSessions(name); n > 0 {
				log.Info("ended the node's kubelet API sessions", "connections", n)
			}
		}
		c.queue.Add(name)
	}
}

// stopRuntimeIf stops rt and forgets it if it still is name's runtime.
func (c *Controller) stopRuntimeIf(name string, rt *nodeRuntime) {
	c.mu.Lock()
	if c.runtimes[name] == rt {
		delete(c.runtimes, name)
	}
	c.mu.Unlock()
	rt.stop()
}

// release gives up a node that no longer exists.
func (c *Controller) release(ctx context.Context, name string) error {
	if err := c.owner.Release(ctx, name); err != nil {
		return fmt.Errorf("release node %s: %w", name, err)
	}
	return nil
}

// shutdown ends an orderly stop: every node's runtime is stopped, all at
// once, and each node's Lease released as soon as its own runtime has
// stopped, so that the other replica takes each node at once instead of a
// lease duration later, never while this one still serves it, and without
// waiting for the slowest node to stop. Then the Leases of the nodes
// contended but not served are released.
func (c *Controller) shutdown(ctx context.Context) error {
	base := context.WithoutCancel(ctx)
	c.mu.Lock()
	rts := c.runtimes
	c.runtimes = map[string]*nodeRuntime{}
	c.mu.Unlock()
	errs := make(chan error, len(rts))
	for name, rt := range rts {
		go func() {
			rt.stop()
			ctx, cancel := context.WithTimeout(base, releaseTimeout)
			defer cancel()
			errs <- c.owner.Release(ctx, name)
		}()
	}
	var failed []error
	for range rts {
		if err := <-errs; err != nil {
			failed = append(failed, err)
		}
	}
	if c.warm != nil {
		c.warm.dropAll()
	}
	rctx, cancel := context.WithTimeout(base, releaseTimeout)
	defer cancel()
	if err := c.owner.ReleaseAll(rctx); err != nil {
		failed = append(failed, err)
	}
	if err := errors.Join(failed...); err != nil {
		return fmt.Errorf("releasing the node leases: %w", err)
	}
	logging.FromContext(ctx).Info("stopped serving every node and released their leases")
	return nil
}

// Enqueue has the RemoteBuildNode name reconciled (Ownership changes).
func (c *Controller) Enqueue(name string) { c.queue.Add(name) }
