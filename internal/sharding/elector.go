package sharding

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// ErrNotRunning is returned by Acquire when the Elector's Run has ended.
var ErrNotRunning = errors.New("sharding: elector is not running")

// Elector holds the node Leases of one replica.
type Elector struct {
	cfg      Config
	informer cache.SharedIndexInformer

	// denied carries the first list or watch of the Leases that the
	// apiserver refused (RBAC, credentials): Run fails with it.
	denied chan error

	mu      sync.Mutex
	log     *slog.Logger
	ctx     context.Context // Run's; nil until Run has synced
	stopped chan struct{}   // closed when Run ends
	nodes   map[string]*contender
	byLease map[string]*contender
}

// contender is this replica's claim on one node's Lease. Its fields after
// the channels are guarded by Elector.mu.
type contender struct {
	node, lease string
	poke        chan struct{} // a new version of the Lease was seen
	stop        chan struct{} // closed by Release
	done        chan struct{} // closed when the loop has ended
	started     bool

	seenVersion string    // the Lease's resourceVersion last seen
	seenAt      time.Time // when this replica first saw it
	held        bool
	renewedAt   time.Time             // start of the last successful write as holder
	last        *coordinationv1.Lease // what that write returned
	lost        chan struct{}         // closed when the current hold ends
	gained      chan struct{}         // closed when a hold starts
	watchdog    clock.Timer           // ends the hold at renewedAt+RenewDeadline
}

// New validates cfg and returns an Elector; Run starts it.
func New(cfg Config) (*Elector, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	leases := cfg.Leases.Leases(cfg.Namespace)
	sel := labels.SelectorFromSet(labels.Set{LabelLease: "node"}).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel
			return leases.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			return leases.Watch(ctx, o)
		},
	}
	e := &Elector{
		cfg: cfg,
		// A client that cannot stream its initial list (a fake) says so.
		informer: cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(lw, cfg.Leases), &coordinationv1.Lease{}, 0, cache.Indexers{}),
		stopped:  make(chan struct{}),
		denied:   make(chan error, 1),
		nodes:    map[string]*contender{},
		byLease:  map[string]*contender{},
	}
	if err := e.informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			select {
			case e.denied <- err:
			default:
			}
		}
	}); err != nil {
		return nil, fmt.Errorf("sharding: lease informer: %w", err)
	}
	seen := func(obj any) {
		if l, ok := obj.(*coordinationv1.Lease); ok {
			e.seen(l)
		}
	}
	if _, err := e.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    seen,
		UpdateFunc: func(_, o any) { seen(o) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if l, ok := obj.(*coordinationv1.Lease); ok {
				e.pokeLease(l.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("sharding: lease informer: %w", err)
	}
	return e, nil
}

// Run watches the node Leases and runs the contenders until ctx ends. It
// writes nothing when ctx ends: a replica that stops without Release leaves
// its Leases to expire, as a killed one would. Call ReleaseAll first on an
// orderly shutdown.
func (e *Elector) Run(ctx context.Context) error {
	log := e.cfg.Logger
	if log == nil {
		log = logging.FromContext(ctx)
	}
	log = log.With("identity", e.cfg.Identity)
	defer close(e.stopped)
	go e.informer.RunWithContext(ctx)
	if err := e.waitSynced(ctx); err != nil {
		return err
	}
	e.mu.Lock()
	e.log, e.ctx = log, ctx
	for _, c := range e.nodes {
		e.startLocked(c)
	}
	e.mu.Unlock()
	log.Info("node lease election started", "namespace", e.cfg.Namespace)
	<-ctx.Done()
	e.mu.Lock()
	var running []*contender
	for _, c := range e.nodes {
		if c.started {
			running = append(running, c)
		}
	}
	e.mu.Unlock()
	for _, c := range running {
		<-c.done
	}
	return nil
}

// ErrLeasesDenied: the apiserver refused this replica the node Leases;
// without them it can serve no node.
var ErrLeasesDenied = errors.New("not allowed to list and watch the node Leases")

// waitSynced waits until the Lease informer has synced, and fails at once
// when the apiserver refuses the Leases: a replica that could never serve
// a node says so and ends, instead of waiting silently.
func (e *Elector) waitSynced(ctx context.Context) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	synced := make(chan bool, 1)
	go func() { synced <- cache.WaitForCacheSync(wctx.Done(), e.informer.HasSynced) }()
	select {
	case ok := <-synced:
		if !ok {
			return fmt.Errorf("sharding: leases in %s did not sync: %w", e.cfg.Namespace, context.Cause(ctx))
		}
		return nil
	case err := <-e.denied:
		cancel()
		<-synced
		return fmt.Errorf("sharding: %w in namespace %s as %s (the Role and RoleBinding in manifests/rbac grant them): %w",
			ErrLeasesDenied, e.cfg.Namespace, e.cfg.Identity, err)
	}
}

// Contend makes this replica try to hold node's Lease from now on (at once
// if Run is running, else once it is), until Release. Idempotent.
func (e *Elector) Contend(node string) error {
	name, err := LeaseName(node)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.nodes[node]; ok {
		return nil
	}
	lost := make(chan struct{})
	close(lost)
	c := &contender{
		node: node, lease: name,
		poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		lost: lost, gained: make(chan struct{}),
	}
	e.nodes[node] = c
	e.byLease[name] = c
	if e.ctx != nil {
		e.startLocked(c)
	}
	return nil
}

// Acquire is Contend, then waits until this replica holds node's Lease.
func (e *Elector) Acquire(ctx context.Context, node string) error {
	if err := e.Contend(node); err != nil {
		return err
	}
	for {
		e.mu.Lock()
		c := e.nodes[node]
		if c == nil {
			e.mu.Unlock()
			return fmt.Errorf("sharding: node %s released while acquiring", node)
		}
		if e.heldLocked(c) {
			e.mu.Unlock()
			return nil
		}
		// Not held: wait for a hold to start; held but past its deadline:
		// wait for the hold to end first.
		wait := c.gained
		if c.held {
			wait = c.lost
		}
		e.mu.Unlock()
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-e.stopped:
			return ErrNotRunning
		case <-c.stop:
			return fmt.Errorf("sharding: node %s released while acquiring", node)
		case <-wait:
		}
	}
}

// Held reports whether this replica holds node's Lease now: it renewed it
// less than RenewDeadline ago, on its clock, whether or not its renewal
// loop has run since.
func (e *Elector) Held(node string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.nodes[node]
	return c != nil && e.heldLocked(c)
}

func (e *Elector) heldLocked(c *contender) bool {
	return c.held && e.cfg.Clock.Since(c.renewedAt) < e.cfg.RenewDeadline
}

// Lost is closed when the current hold of node ends (lost, expired or
// released); already closed when node is not held. Serve a node from the
// moment Held turns true and stop at once when its Lost channel closes.
func (e *Elector) Lost(node string) <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c := e.nodes[node]; c != nil && e.heldLocked(c) {
		return c.lost
	}
	ch := make(chan struct{})
	close(ch)
	return ch
}

// Release stops contending for node; if this replica holds its Lease, it is
// given up (no holder) so that another replica takes the node at once. Stop
// serving the node before calling it.
func (e *Elector) Release(ctx context.Context, node string) error {
	e.mu.Lock()
	c := e.nodes[node]
	if c == nil {
		e.mu.Unlock()
		return nil
	}
	delete(e.nodes, node)
	delete(e.byLease, c.lease)
	close(c.stop)
	started := c.started
	e.mu.Unlock()
	if started {
		<-c.done
	}
	e.mu.Lock()
	was := e.heldLocked(c)
	last := c.last
	e.endHoldLocked(c)
	e.mu.Unlock()
	if !was {
		return nil
	}
	e.notify(c.node)
	_, err := e.cfg.Leases.Leases(e.cfg.Namespace).Update(ctx, released(last), metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // someone else wrote it since: it is not ours to give up any more
	}
	if err != nil {
		return fmt.Errorf("sharding: release lease %s: %w", c.lease, err)
	}
	return nil
}

// ReleaseAll releases every node (orderly shutdown: the other replica takes
// them over without waiting for their Leases to expire).
func (e *Elector) ReleaseAll(ctx context.Context) error {
	e.mu.Lock()
	nodes := make([]string, 0, len(e.nodes))
	for n := range e.nodes {
		nodes = append(nodes, n)
	}
	e.mu.Unlock()
	var errs []error
	for _, n := range nodes {
		errs = append(errs, e.Release(ctx, n))
	}
	return errors.Join(errs...)
}

func (e *Elector) startLocked(c *contender) {
	c.started = true
	go e.loop(e.ctx, c)
}

func (e *Elector) notify(node string) {
	if e.cfg.OnChange != nil {
		e.cfg.OnChange(node)
	}
}

// seen records when this replica first saw each version of a Lease, and
// wakes its contender.
func (e *Elector) seen(l *coordinationv1.Lease) {
	e.mu.Lock()
	c := e.byLease[l.Name]
	if c != nil {
		e.observeLocked(c, l)
	}
	e.mu.Unlock()
	if c != nil {
		wake(c)
	}
}

func (e *Elector) pokeLease(name string) {
	e.mu.Lock()
	c := e.byLease[name]
	e.mu.Unlock()
	if c != nil {
		wake(c)
	}
}

func wake(c *contender) {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

func (e *Elector) observeLocked(c *contender, l *coordinationv1.Lease) {
	if l.ResourceVersion != c.seenVersion {
		c.seenVersion, c.seenAt = l.ResourceVersion, e.cfg.Clock.Now()
	}
}

// loop contends for one Lease until Release or the end of ctx.
func (e *Elector) loop(ctx context.Context, c *contender) {
	defer close(c.done)
	for {
		// The next step is due wait after this one began: its requests'
		// time counts against the wait, so renewals keep their pace, and
		// a step due by the time this one ends runs at once.
		began := e.cfg.Clock.Now()
		wait := e.step(ctx, c)
		timeout, stop := e.timerAt(began.Add(wait))
		woke := e.await(ctx, c, timeout)
		stop()
		switch woke {
		case wokeDone:
			e.mu.Lock()
			was := c.held
			e.endHoldLocked(c)
			e.mu.Unlock()
			if was {
				e.notify(c.node)
			}
			return
		case wokeStopped:
			return
		}
	}
}

type wakeup int

const (
	wokeDue wakeup = iota
	wokeDone
	wokeStopped
)

// timerAt returns a channel that fires at the clock's time at, and its
// stop. The clock may move between reading it and arming the timer (a
// fake clock stepped by another goroutine, a real one descheduled), and
// the timer then fires that much late: so if the clock has reached at
// once the timer is armed, the time is due at once. Otherwise a fake
// clock stepped to exactly at would leave the timer waiting a step more.
func (e *Elector) timerAt(at time.Time) (<-chan time.Time, func() bool) {
	never := func() bool { return false }
	d := at.Sub(e.cfg.Clock.Now())
	if d <= 0 {
		return alreadyDue, never
	}
	t := e.cfg.Clock.NewTimer(d)
	if !e.cfg.Clock.Now().Before(at) {
		t.Stop()
		return alreadyDue, never
	}
	return t.C(), t.Stop
}

// alreadyDue is the timeout of a step due at once.
var alreadyDue = func() <-chan time.Time {
	ch := make(chan time.Time)
	close(ch)
	return ch
}()

// await waits for the next step (timeout, or a poke), Release, or the end
// of ctx; the last two win over a step due.
func (e *Elector) await(ctx context.Context, c *contender, timeout <-chan time.Time) wakeup {
	select {
	case <-ctx.Done():
		return wokeDone
	case <-c.stop:
		return wokeStopped
	default:
	}
	select {
	case <-ctx.Done():
		return wokeDone
	case <-c.stop:
		return wokeStopped
	case <-c.poke:
	case <-timeout:
	}
	return wokeDue
}

// step does what is due for c now and returns how long until the next step
// is due, unless the Lease changes before.
func (e *Elector) step(ctx context.Context, c *contender) time.Duration {
	e.mu.Lock()
	isHeld := c.held
	e.mu.Unlock()
	if isHeld {
		return e.renew(ctx, c)
	}
	return e.tryAcquire(ctx, c)
}

func (e *Elector) renew(ctx context.Context, c *contender) time.Duration {
	now := e.cfg.Clock.Now()
	e.mu.Lock()
	if !e.heldLocked(c) {
		// The watchdog (expire) may have ended the hold since step looked:
		// the change is told once, by whoever ended it.
		ended := e.lostLocked(c, "not renewed within the renew deadline")
		e.mu.Unlock()
		if ended {
			e.notify(c.node)
		}
		return 0
	}
	if due := c.renewedAt.Add(e.cfg.RenewInterval); now.Before(due) {
		e.mu.Unlock()
		return due.Sub(now)
	}
	deadline := c.renewedAt.Add(e.cfg.RenewDeadline)
	want := held(c.last, e.cfg.Identity, now, e.cfg.LeaseDuration)
	e.mu.Unlock()

	got, err := e.write(ctx, want)
	if apierrors.IsConflict(err) {
		// Someone wrote the Lease since our last renewal: ours still only
		// if it still names us.
		var cur *coordinationv1.Lease
		cur, err = e.cfg.Leases.Leases(e.cfg.Namespace).Get(ctx, c.lease, metav1.GetOptions{})
		if err == nil {
			if ptr.Deref(cur.Spec.HolderIdentity, "") != e.cfg.Identity {
				e.mu.Lock()
				ended := e.lostLocked(c, "taken by "+ptr.Deref(cur.Spec.HolderIdentity, "nobody"))
				e.mu.Unlock()
				if ended {
					e.notify(c.node)
				}
				return 0
			}
			got, err = e.write(ctx, held(cur, e.cfg.Identity, now, e.cfg.LeaseDuration))
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !c.held {
		return 0 // the watchdog ended the hold while the request ran
	}
	if err != nil {
		e.log.Warn("renewing node lease failed", "node", c.node, "lease", c.lease, "err", err)
		left := deadline.Sub(e.cfg.Clock.Now())
		return max(0, min(e.cfg.RetryPeriod, left))
	}
	e.holdLocked(c, got, now)
	return e.cfg.RenewInterval
}

func (e *Elector) tryAcquire(ctx context.Context, c *contender) time.Duration {
	now := e.cfg.Clock.Now()
	obj, exists, err := e.informer.GetStore().GetByKey(e.cfg.Namespace + "/" + c.lease)
	if err != nil {
		e.log.Error("reading node lease from cache", "lease", c.lease, "err", err)
		return e.cfg.RetryPeriod
	}
	var want *coordinationv1.Lease
	if !exists {
		want = newLease(c.lease, e.cfg.Namespace, e.cfg.Identity, now, e.cfg.LeaseDuration)
	} else {
		cur := obj.(*coordinationv1.Lease)
		e.mu.Lock()
		e.observeLocked(c, cur)
		seenAt := c.seenAt
		e.mu.Unlock()
		ok, at := takeable(cur, e.cfg.Identity, seenAt, now, e.cfg.LeaseDuration)
		if !ok {
			return at.Sub(now)
		}
		want = held(cur, e.cfg.Identity, now, e.cfg.LeaseDuration)
	}
	var got *coordinationv1.Lease
	if exists {
		got, err = e.write(ctx, want)
	} else {
		got, err = e.cfg.Leases.Leases(e.cfg.Namespace).Create(ctx, want, metav1.CreateOptions{})
	}
	switch {
	case apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		// Another replica was first; its write is on its way to the cache.
		return e.cfg.RetryPeriod
	case err != nil:
		e.log.Warn("acquiring node lease failed", "node", c.node, "lease", c.lease, "err", err)
		return e.cfg.RetryPeriod
	}
	e.mu.Lock()
	e.holdLocked(c, got, now)
	e.mu.Unlock()
	e.log.Info("node lease acquired", "node", c.node, "lease", c.lease,
		"transitions", ptr.Deref(got.Spec.LeaseTransitions, 0))
	e.notify(c.node)
	return e.cfg.RenewInterval
}

// write updates a Lease, giving up at the renew deadline's length: a hung
// request must not outlive the hold it is meant to extend.
func (e *Elector) write(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	return e.cfg.Leases.Leases(e.cfg.Namespace).Update(ctx, l, metav1.UpdateOptions{})
}

// holdLocked records a successful write as holder that started at start.
func (e *Elector) holdLocked(c *contender, got *coordinationv1.Lease, start time.Time) {
	if !c.held {
		c.held = true
		c.lost = make(chan struct{})
		close(c.gained)
	}
	c.renewedAt, c.last = start, got
	e.observeLocked(c, got)
	if c.watchdog != nil {
		c.watchdog.Stop()
	}
	// Lost must close at the deadline even while a request hangs.
	// Its own goroutine: a fake clock runs AfterFunc callbacks under its lock,
	// which Held needs while holding e.mu.
	c.watchdog = e.cfg.Clock.AfterFunc(start.Add(e.cfg.RenewDeadline).Sub(e.cfg.Clock.Now()), func() { go e.expire(c, start) })
}

// expire ends c's hold if its last renewal is still the one that started at start.
func (e *Elector) expire(c *contender, start time.Time) {
	e.mu.Lock()
	ended := c.renewedAt.Equal(start) && e.lostLocked(c, "not renewed within the renew deadline")
	e.mu.Unlock()
	if ended {
		e.notify(c.node)
		wake(c)
	}
}

// lostLocked ends c's hold, if any, for why; it says whether it ended one
// (only then is the change to be told).
func (e *Elector) lostLocked(c *contender, why string) bool {
	if !c.held {
		return false
	}
	e.log.Warn("node lease lost", "node", c.node, "lease", c.lease, "reason", why)
	e.endHoldLocked(c)
	return true
}

func (e *Elector) endHoldLocked(c *contender) {
	if c.watchdog != nil {
		c.watchdog.Stop()
		c.watchdog = nil
	}
	if c.held {
		c.held = false
		close(c.lost)
		c.gained = make(chan struct{})
	}
}
