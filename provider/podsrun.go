package provider

import (
	"context"
	"errors"
	"slices"

	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// Run starts the pods' workers, dispatches podman events to them,
// relists and removes orphans until ctx ends. It returns nil once every
// worker and goroutine it started has ended; Done is closed then.
func (p *Pods) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.ctx != nil {
		p.mu.Unlock()
		return errors.New("pods: Run called twice")
	}
	p.ctx = ctx
	for _, w := range p.pending {
		p.startLocked(w)
	}
	p.pending = nil
	p.mu.Unlock()
	defer close(p.done)
	defer p.stopWorkers()
	events := make(chan struct{})
	go func() { defer close(events); p.watchEvents(ctx) }()
	defer func() { <-events }()
	relist := p.cfg.Clock.NewTicker(p.cfg.ResyncInterval)
	defer relist.Stop()
	gc := p.cfg.Clock.NewTicker(3 * p.cfg.ResyncInterval)
	defer gc.Stop()
	hostChanged := p.rt.Changed()
	var host readiness
	// Empty, not nil: the first relist wakes every pod that has containers,
	// so that a change between a worker's first sync and it is not missed.
	seen := podFingerprints{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-relist.C():
			if p.rt.Ready() {
				seen = p.relist(ctx, seen)
			}
		case <-hostChanged:
			hostChanged = p.rt.Changed()
			if host.becameReady(p.rt.Ready()) {
				p.adoptEnded()
				p.pokeAll()
			}
		case <-gc.C():
			if p.rt.Ready() {
				p.adoptEnded()
				if err := p.removeOrphans(ctx); err != nil {
					p.cfg.Logger.Warn("orphans not all removed, retrying at the next sweep", "err", err, "retryIn", 3*p.cfg.ResyncInterval)
				}
			}
		}
	}
}

// readiness follows a host's readiness across its changes. The host
// changes at every refresh of its facts (every 30 s) while it stays ready:
// only a host that turns ready has workers to wake (they wait while it is
// not), else every pod of every node on the host would list and inspect its
// containers at each refresh.
type readiness struct{ ready bool }

// becameReady records ready and reports whether the host just turned ready.
func (r *readiness) becameReady(ready bool) bool {
	was := r.ready
	r.ready = ready
	return ready && !was
}

// watchEvents follows the host's container events for this node and pokes
// the worker of the pod each belongs to; the stream is reopened after every
// break (a dropped SSH connection), followed by a full resync.
func (p *Pods) watchEvents(ctx context.Context) {
	for ctx.Err() == nil {
		if !p.rt.Ready() {
			select {
			case <-ctx.Done():
				return
			case <-p.rt.Changed():
			}
			continue
		}
		events, err := p.rt.Events(ctx, map[string]string{pod.LabelNode: p.cfg.NodeName})
		if err != nil {
			p.cfg.Logger.Info("podman events unavailable, retrying", "err", err, "retryIn", p.cfg.Retry.Events)
			t := p.cfg.Clock.NewTimer(p.cfg.Retry.Events)
			select {
			case <-ctx.Done():
			case <-t.C():
			}
			t.Stop()
			continue
		}
		p.pokeAll() // catch up on what happened while not listening
		p.cfg.Host.containersChanged()
		for e := range events {
			if startsOrEnds(e.Action) {
				p.cfg.Host.containersChanged()
			}
			if !changesStatus(e.Action) {
				continue
			}
			uid := types.UID(e.Attributes[pod.LabelPodUID])
			w := p.workerOf(uid)
			if w != nil {
				w.poke()
			}
		}
	}
}

// changesStatus tells the podman events that a pod worker must react to:
// what it did not do itself. The rest (create, init, start, mount, exec,
// attach, cleanup, ...) come from its own steps, each followed by a look at
// the containers, or do not change a pod's status; a worker woken for each
// of them lists and inspects its containers again for nothing, some ten
// times per pod start, on the same podman that starts the other pods.
func changesStatus(action string) bool {
	switch action {
	case "died", "oom", "remove":
		return true
	}
	return false
}

// startsOrEnds tells the podman events of a container that starts or
// ends: the host's set of running containers changed.
func startsOrEnds(action string) bool {
	switch action {
	case "start", "restart", "died", "oom", "remove":
		return true
	}
	return false
}

func (p *Pods) pokeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		w.poke()
	}
}

// adoptEnded registers read-only workers for ended pods this process has no
// worker for (it restarted after they ended), so their logs stay readable.
func (p *Pods) adoptEnded() {
	if p.cfg.Ended == nil {
		return
	}
	for _, pd := range p.cfg.Ended() {
		p.mu.Lock()
		_, known := p.byUID[pd.UID]
		if !known {
			w := newPodWorker(p, pd)
			w.ended = true
			p.addLocked(w)
			p.startLocked(w)
		}
		p.mu.Unlock()
	}
}

// removeOrphans removes podman pods, containers and volumes of this node
// whose Kubernetes pod no longer exists (deleted while rbn-kubelet was down,
// or ended pods that virtual-kubelet deletes without telling the provider).
// It goes on past a failure and returns them all: the next sweep tries
// again what is left.
func (p *Pods) removeOrphans(ctx context.Context) error {
	if p.cfg.Known == nil {
		return nil
	}
	p.mu.Lock()
	var gone []*podWorker
	for uid, w := range p.byUID {
		if known, synced := p.cfg.Known(uid); synced && !known {
			gone = append(gone, w)
		}
	}
	p.mu.Unlock()
	for _, w := range gone {
		w.terminate(0)
	}
	sel := map[string]string{pod.LabelNode: p.cfg.NodeName}
	orphans := map[types.UID]bool{}
	orphan := func(labels map[string]string) bool {
		uid := types.UID(labels[pod.LabelPodUID])
		if uid == "" {
			return false
		}
		p.mu.Lock()
		_, mine := p.byUID[uid]
		p.mu.Unlock()
		if mine {
			return false
		}
		known, synced := p.cfg.Known(uid)
		if synced && !known {
			orphans[uid] = true
		}
		return synced && !known
	}
	// The nodes of a host share the lists (half the sweep period old at
	// most): a sweep per node listed every pod, container and volume of
	// the host three times per node and period.
	objects := p.rt.NodeObjects(p.cfg.NodeName, 3*p.cfg.ResyncInterval/2)
	removed, err := removeLabelled(ctx, objects, sel, orphan, "orphaned", p.cfg.Logger)
	if len(orphans) > 0 {
		// With their pods goes what a pod's cluster Services left on the
		// host (there or not: rm -rf of a missing path is no error).
		dirs := make([]string, 0, len(orphans))
		for uid := range orphans {
			dirs = append(dirs, servicesDir(uid))
		}
		slices.Sort(dirs)
		err = errors.Join(err, p.rt.RemovePaths(ctx, dirs))
	}
	if p.cfg.Host != nil {
		p.cfg.Host.recordSweep(removed, err)
	}
	return err
}
