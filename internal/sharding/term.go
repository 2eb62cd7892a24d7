package sharding

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
)

// term is this replica's hold of its own Lease, rbn-replica-<identity>:
// from the first successful write of it as holder until a renewal fails to
// come within RenewDeadline. A node's hold belongs to the term it was taken
// in and ends with it; the next term takes each node Lease again with a
// write (conditional on its version, as every write is) before serving the
// node, so that it never serves a node another replica took while this
// one's Lease looked expired. Guarded by Elector.mu.
type term struct {
	id        uint64 // terms started so far: the current one's number
	held      bool
	renewedAt time.Time             // start of the last successful write as holder
	last      *coordinationv1.Lease // what that write returned
	seen      observation           // the Lease's version last seen
	watchdog  clock.Timer           // ends the term at renewedAt+RenewDeadline
}

func (e *Elector) termAliveLocked() bool {
	return e.term.held && e.cfg.Clock.Since(e.term.renewedAt) < e.cfg.RenewDeadline
}

func (e *Elector) observeTermLocked(l *coordinationv1.Lease) {
	if l.ResourceVersion != e.term.seen.version {
		e.term.seen = observation{version: l.ResourceVersion, at: e.cfg.Clock.Now()}
	}
}

func wakeTerm(e *Elector) {
	select {
	case e.termPoke <- struct{}{}:
	default:
	}
}

// runTerm keeps this replica's term until ctx ends or ReleaseAll.
func (e *Elector) runTerm(ctx context.Context) {
	defer close(e.termDone)
	for {
		began := e.cfg.Clock.Now()
		wait := e.termStep(ctx)
		timeout, stop := e.timerAt(began, wait)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-e.termStop:
			stop()
			return
		case <-e.termPoke:
		case <-timeout:
		}
		stop()
	}
}

// termStep renews the term, or starts one, and returns how long until the
// next step is due.
func (e *Elector) termStep(ctx context.Context) time.Duration {
	e.mu.Lock()
	held := e.term.held
	e.mu.Unlock()
	if held {
		return e.renewTerm(ctx)
	}
	return e.startTerm(ctx)
}

func (e *Elector) renewTerm(ctx context.Context) time.Duration {
	now := e.cfg.Clock.Now()
	e.mu.Lock()
	if !e.termAliveLocked() {
		// The watchdog (expireTerm) may not have run yet: the change is
		// told once, by whoever ended the term.
		ended := e.endTermLocked("not renewed within the renew deadline")
		e.mu.Unlock()
		e.tell(ended)
		return 0
	}
	if due := e.term.renewedAt.Add(e.cfg.RenewInterval); now.Before(due) {
		e.mu.Unlock()
		return due.Sub(now)
	}
	deadline := e.term.renewedAt.Add(e.cfg.RenewDeadline)
	want := held(e.term.last, e.cfg.Identity, now, e.cfg.LeaseDuration)
	e.mu.Unlock()

	got, err := e.write(ctx, want)
	if apierrors.IsConflict(err) {
		// Someone wrote the Lease since our last renewal: ours still only
		// if it still names us.
		var cur *coordinationv1.Lease
		cur, err = e.cfg.Leases.Leases(e.cfg.Namespace).Get(ctx, e.replicaLease, metav1.GetOptions{})
		if err == nil {
			if h := ptr.Deref(cur.Spec.HolderIdentity, ""); h != e.cfg.Identity {
				return e.endTerm("taken by " + h)
			}
			got, err = e.write(ctx, held(cur, e.cfg.Identity, now, e.cfg.LeaseDuration))
		}
	}
	if apierrors.IsNotFound(err) {
		// Deleted (as a gone replica's, by another replica, after this
		// one was cut off for long): a new term starts with a new Lease.
		return e.endTerm("its lease was deleted")
	}
	e.mu.Lock()
	if !e.term.held {
		e.mu.Unlock()
		return 0 // the watchdog ended the term while the request ran
	}
	if err != nil {
		e.mu.Unlock()
		e.log.Warn("renewing replica lease failed", "lease", e.replicaLease, "err", err)
		left := deadline.Sub(e.cfg.Clock.Now())
		return max(0, min(e.cfg.RetryPeriod, left))
	}
	e.holdTermLocked(got, now)
	e.mu.Unlock()
	e.collectReplicaLeases(ctx)
	return e.cfg.RenewInterval
}

// startTerm takes this replica's Lease: creates it, or writes itself in
// (a previous process of the same identity held it; or it was released),
// or waits for it to expire (another process runs with this identity).
func (e *Elector) startTerm(ctx context.Context) time.Duration {
	now := e.cfg.Clock.Now()
	cur, exists, err := e.cachedLease(e.replicaLease)
	if err != nil {
		e.log.Error("reading replica lease from cache", "lease", e.replicaLease, "err", err)
		return e.cfg.RetryPeriod
	}
	var got *coordinationv1.Lease
	if !exists {
		got, err = e.cfg.Leases.Leases(e.cfg.Namespace).Create(ctx,
			newLease(e.replicaLease, e.cfg.Namespace, "replica", e.cfg.Identity, now, e.cfg.LeaseDuration), metav1.CreateOptions{})
	} else {
		e.mu.Lock()
		e.observeTermLocked(cur)
		seenAt := e.term.seen.at
		e.mu.Unlock()
		ok, at := takeable(cur, e.cfg.Identity, seenAt, now, e.cfg.LeaseDuration)
		if !ok {
			return at.Sub(now)
		}
		got, err = e.write(ctx, held(cur, e.cfg.Identity, now, e.cfg.LeaseDuration))
	}
	switch {
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		return e.cfg.RetryPeriod // a newer version is on its way to the cache
	case err != nil:
		e.log.Warn("acquiring replica lease failed", "lease", e.replicaLease, "err", err)
		return e.cfg.RetryPeriod
	}
	e.mu.Lock()
	e.holdTermLocked(got, now)
	id := e.term.id
	waiting := e.waitingLocked()
	e.mu.Unlock()
	e.log.Info("replica lease acquired: this replica may hold nodes", "lease", e.replicaLease, "term", id)
	for _, c := range waiting {
		wake(c)
	}
	return e.cfg.RenewInterval
}

// holdTermLocked records a successful write of the replica Lease as holder
// that started at start, starting a term if none runs.
func (e *Elector) holdTermLocked(got *coordinationv1.Lease, start time.Time) {
	if !e.term.held {
		e.term.held = true
		e.term.id++
	}
	e.term.renewedAt, e.term.last = start, got
	e.observeTermLocked(got)
	if e.term.watchdog != nil {
		e.term.watchdog.Stop()
	}
	// Every node must stop at the deadline even while a request hangs.
	// Its own goroutine: a fake clock runs AfterFunc callbacks under its
	// lock, which Held needs while holding e.mu.
	e.term.watchdog = e.cfg.Clock.AfterFunc(start.Add(e.cfg.RenewDeadline).Sub(e.cfg.Clock.Now()), func() { go e.expireTerm(start) })
}

// expireTerm ends the term if its last renewal is still the one that
// started at start.
func (e *Elector) expireTerm(start time.Time) {
	e.mu.Lock()
	var ended []string
	if e.term.renewedAt.Equal(start) {
		ended = e.endTermLocked("not renewed within the renew deadline")
	}
	e.mu.Unlock()
	e.tell(ended)
	wakeTerm(e)
}

// endTerm ends the term for why, tells the nodes whose holds ended, and
// returns the wait before a new term is tried.
func (e *Elector) endTerm(why string) time.Duration {
	e.mu.Lock()
	ended := e.endTermLocked(why)
	e.mu.Unlock()
	e.tell(ended)
	return 0
}

// endTermLocked ends the term, if any, for why, and with it every node
// hold; it returns the nodes whose holds it ended (to be told).
func (e *Elector) endTermLocked(why string) []string {
	if !e.term.held {
		return nil
	}
	if e.term.watchdog != nil {
		e.term.watchdog.Stop()
		e.term.watchdog = nil
	}
	e.term.held = false
	var ended []string
	for _, c := range e.nodes {
		if c.held {
			e.endHoldLocked(c)
			ended = append(ended, c.node)
		}
	}
	if e.log != nil {
		e.log.Warn("replica lease lost: every node it held stops being served", "lease", e.replicaLease, "reason", why, "nodes", len(ended))
	}
	return ended
}

func (e *Elector) tell(nodes []string) {
	for _, n := range nodes {
		e.notify(n)
	}
}

// releaseTerm stops the term loop, ends the term and deletes this
// replica's Lease (ReleaseAll, on the way out).
func (e *Elector) releaseTerm(ctx context.Context) error {
	e.stopTerm.Do(func() { close(e.termStop) })
	e.mu.Lock()
	running := e.ctx != nil
	e.mu.Unlock()
	if running {
		<-e.termDone
	}
	e.mu.Lock()
	last := e.term.last
	ended := e.endTermLocked("released")
	e.mu.Unlock()
	e.tell(ended)
	if last == nil {
		return nil
	}
	err := e.cfg.Leases.Leases(e.cfg.Namespace).Delete(ctx, e.replicaLease,
		metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: ptr.To(last.ResourceVersion)}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

// collectReplicaLeases deletes the Leases of replicas gone: unchanged for
// replicaLeaseGC lease durations as this replica observed them (each
// replica that ever ran left one; a pod's name is not reused). The delete
// is conditional on the version observed: a replica that renewed meanwhile
// keeps its Lease. One that was only cut off finds its Lease gone at its
// next renewal and starts a new term.
func (e *Elector) collectReplicaLeases(ctx context.Context) {
	if e.gcRefused.Load() {
		return
	}
	now := e.cfg.Clock.Now()
	e.mu.Lock()
	stale := map[string]observation{}
	for name, o := range e.replicas {
		if now.Sub(o.at) >= replicaLeaseGC*e.cfg.LeaseDuration {
			stale[name] = o
		}
	}
	e.mu.Unlock()
	for name, o := range stale {
		err := e.cfg.Leases.Leases(e.cfg.Namespace).Delete(ctx, name,
			metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: ptr.To(o.version)}})
		switch {
		case err == nil:
			e.log.Info("deleted the lease of a replica gone", "lease", name, "unchangedFor", now.Sub(o.at).Round(time.Second))
		case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		case apierrors.IsForbidden(err):
			// The RBAC of an earlier rbn: said once, and not tried again
			// by this process.
			e.gcRefused.Store(true)
			e.log.Warn("not allowed to delete the leases of replicas gone; they stay (manifests/rbac grants delete on Leases in this namespace)", "lease", name, "err", err)
			return
		default:
			e.log.Warn("deleting the lease of a replica gone failed", "lease", name, "err", err)
			continue
		}
		e.mu.Lock()
		if e.replicas[name] == o {
			delete(e.replicas, name)
		}
		e.mu.Unlock()
	}
}
