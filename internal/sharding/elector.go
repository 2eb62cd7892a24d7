package sharding

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
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

	// replicaLease is this replica's own Lease's name; term its hold of
	// it (term.go).
	replicaLease string
	termPoke     chan struct{} // wakes the term loop
	termStop     chan struct{} // closed by ReleaseAll
	termDone     chan struct{} // closed when the term loop has ended
	stopTerm     sync.Once
	gcRefused    atomic.Bool // RBAC refused to delete a replica Lease: no more tries

	mu      sync.Mutex
	log     *slog.Logger
	ctx     context.Context // Run's; nil until Run has synced
	stopped chan struct{}   // closed when Run ends
	nodes   map[string]*contender
	byLease map[string]*contender
	term    term
	// replicas are the other replicas' Leases as this replica observed
	// them, by name.
	replicas map[string]observation
}

// observation is a version of a Lease and when this replica first saw it.
type observation struct {
	version string
	at      time.Time
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
	// held: the node's Lease names this replica, written in term (the
	// replica's term): a hold lasts as long as the term it was taken in.
	held bool
	term uint64
	// last is what the write that took the Lease returned, base the
	// version it replaced ("" for a Lease created); confirmed, that the
	// informer delivered a version other than base: ours, as our write
	// replaced base, or a newer one. From then on, any version of the
	// Lease but ours is newer than ours.
	last      *coordinationv1.Lease
	base      string
	confirmed bool
	lost      chan struct{} // closed when the current hold ends
	gained    chan struct{} // closed when a hold starts
}

// New validates cfg and returns an Elector; Run starts it.
func New(cfg Config) (*Elector, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	replicaLease, err := ReplicaLeaseName(cfg.Identity)
	if err != nil {
		return nil, err // validate checked it
	}
	leases := cfg.Leases.Leases(cfg.Namespace)
	kinds, err := labels.NewRequirement(LabelLease, selection.In, []string{"node", "replica"})
	if err != nil {
		return nil, fmt.Errorf("sharding: lease selector: %w", err)
	}
	sel := labels.NewSelector().Add(*kinds).String()
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
		replicas: map[string]observation{},

		replicaLease: replicaLease,
		termPoke:     make(chan struct{}, 1),
		termStop:     make(chan struct{}),
		termDone:     make(chan struct{}),
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
				e.gone(l)
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
	go e.runTerm(ctx)
	for _, c := range e.nodes {
		e.startLocked(c)
	}
	e.mu.Unlock()
	log.Info("node lease election started", "namespace", e.cfg.Namespace, "replicaLease", e.replicaLease)
	<-ctx.Done()
	<-e.termDone
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
	c := &contender{
		node: node, lease: name,
		poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
		lost: closedChan(), gained: make(chan struct{}),
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

// Held reports whether this replica holds node's Lease now: the Lease names
// it, written in its current term, which it renewed less than RenewDeadline
// ago, on its clock, whether or not its renewal loop has run since.
func (e *Elector) Held(node string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.nodes[node]
	return c != nil && e.heldLocked(c)
}

func (e *Elector) heldLocked(c *contender) bool {
	return c.held && c.term == e.term.id && e.termAliveLocked()
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
// them over without waiting for their Leases to expire), then ends this
// replica's term and deletes its replica Lease. Call it once, on the way
// out: the elector holds nothing afterwards.
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
	errs = append(errs, e.releaseTerm(ctx))
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
// wakes who waits on it: a node Lease's contender; for another replica's
// Lease released (no holder), every contender not holding its node. (One
// waiting for that replica's Lease to expire needs no wake at a renewal:
// its timer for the old expiry finds the new one.)
func (e *Elector) seen(l *coordinationv1.Lease) {
	e.mu.Lock()
	var wakeAll bool
	var c *contender
	switch {
	case l.Labels[LabelLease] != "replica":
		if c = e.byLease[l.Name]; c != nil {
			e.observeLocked(c, l)
		}
	case l.Name == e.replicaLease:
		e.observeTermLocked(l)
	default:
		if o, ok := e.replicas[l.Name]; !ok || o.version != l.ResourceVersion {
			e.replicas[l.Name] = observation{version: l.ResourceVersion, at: e.cfg.Clock.Now()}
		}
		wakeAll = ptr.Deref(l.Spec.HolderIdentity, "") == ""
	}
	var waiting []*contender
	if wakeAll {
		waiting = e.waitingLocked()
	}
	e.mu.Unlock()
	if c != nil {
		wake(c)
	}
	for _, c := range waiting {
		wake(c)
	}
}

// gone wakes who waits on a deleted Lease, as seen does.
func (e *Elector) gone(l *coordinationv1.Lease) {
	e.mu.Lock()
	c := e.byLease[l.Name]
	replica := l.Labels[LabelLease] == "replica" && l.Name != e.replicaLease
	if replica {
		delete(e.replicas, l.Name)
	}
	var waiting []*contender
	if replica {
		waiting = e.waitingLocked()
	}
	e.mu.Unlock()
	if c != nil {
		wake(c)
	}
	if l.Name == e.replicaLease {
		wakeTerm(e)
	}
	for _, c := range waiting {
		wake(c)
	}
}

// waitingLocked are the contenders not holding their node.
func (e *Elector) waitingLocked() []*contender {
	var out []*contender
	for _, c := range e.nodes {
		if !c.held {
			out = append(out, c)
		}
	}
	return out
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
	if c.held && l.ResourceVersion != c.base {
		c.confirmed = true
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
		timeout, stop := e.timerAt(began, wait)
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

// untilPoked is the wait of a step that has nothing due until something
// changes (a held node, a node waiting for the replica's term).
const untilPoked = time.Duration(-1)

// timerAt returns a channel that fires at the clock's time began+wait (never
// for untilPoked), and its stop. The clock may move between reading it and
// arming the timer (a fake clock stepped by another goroutine, a real one
// descheduled), and the timer then fires that much late: so if the clock
// has reached the time once the timer is armed, the time is due at once.
// Otherwise a fake clock stepped to exactly the time would leave the timer
// waiting a step more.
func (e *Elector) timerAt(began time.Time, wait time.Duration) (<-chan time.Time, func() bool) {
	never := func() bool { return false }
	if wait == untilPoked {
		return nil, never
	}
	at := began.Add(wait)
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
// is due, unless the Lease changes before (untilPoked: nothing is due until
// then). A held node needs nothing: its hold lasts as long as the
// replica's term, unless its Lease is taken or deleted.
func (e *Elector) step(ctx context.Context, c *contender) time.Duration {
	e.mu.Lock()
	if c.held {
		why := e.takenLocked(c)
		ended := why != "" && e.lostLocked(c, why)
		e.mu.Unlock()
		if ended {
			e.notify(c.node)
			return 0
		}
		return untilPoked
	}
	alive := e.termAliveLocked()
	e.mu.Unlock()
	if !alive {
		return untilPoked // the term's start wakes every contender
	}
	return e.tryAcquire(ctx, c)
}

// cachedLease is the informer's copy of the Lease name of our namespace.
func (e *Elector) cachedLease(name string) (*coordinationv1.Lease, bool, error) {
	obj, exists, err := e.informer.GetStore().GetByKey(e.cfg.Namespace + "/" + name)
	if err != nil || !exists {
		return nil, false, err
	}
	l, ok := obj.(*coordinationv1.Lease)
	return l, ok, nil
}

// takenLocked says why c's hold is over by what the informer holds of its
// Lease, or "" if it is not. Until the informer delivered the version our
// write returned, what it holds is older than that and says nothing.
func (e *Elector) takenLocked(c *contender) string {
	if !c.confirmed {
		return ""
	}
	l, exists, err := e.cachedLease(c.lease)
	switch {
	case err != nil:
		return ""
	case !exists:
		return "its lease was deleted"
	}
	if h := ptr.Deref(l.Spec.HolderIdentity, ""); h != e.cfg.Identity {
		return "taken by " + cmp.Or(h, "nobody")
	}
	return ""
}

func (e *Elector) tryAcquire(ctx context.Context, c *contender) time.Duration {
	now := e.cfg.Clock.Now()
	cur, exists, err := e.cachedLease(c.lease)
	if err != nil {
		e.log.Error("reading node lease from cache", "lease", c.lease, "err", err)
		return e.cfg.RetryPeriod
	}
	e.mu.Lock()
	term := e.term.id
	e.mu.Unlock()
	var want *coordinationv1.Lease
	if !exists {
		want = newLease(c.lease, e.cfg.Namespace, "node", e.cfg.Identity, now, e.cfg.LeaseDuration)
	} else {
		e.mu.Lock()
		e.observeLocked(c, cur)
		seenAt := c.seenAt
		e.mu.Unlock()
		ok, at, check := e.nodeTakeable(cur, seenAt, now)
		if !ok {
			return at.Sub(now)
		}
		if check != nil {
			if wait, ok := e.stillExpired(ctx, check); !ok {
				return wait
			}
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
	if e.term.id != term || !e.termAliveLocked() {
		// The term ended while the write ran: the Lease names this
		// replica, and the next term writes it again before serving.
		e.mu.Unlock()
		return 0
	}
	e.holdLocked(c, got, term, want.ResourceVersion)
	e.mu.Unlock()
	e.log.Info("node lease acquired", "node", c.node, "lease", c.lease,
		"transitions", ptr.Deref(got.Spec.LeaseTransitions, 0))
	e.notify(c.node)
	return untilPoked
}

// nodeTakeable tells whether this replica may write itself into a node's
// Lease l now, which it first saw at seenAt, and if not, the earliest time
// it may. A Lease held through a replica Lease may be taken once that
// replica Lease has not changed for its duration, as this replica observed
// it: then check is that observation, to be read afresh from the apiserver
// first (stillExpired); once its holder's replica Lease is gone, once l
// itself has not changed for LeaseDuration. A Lease of an earlier version
// of rbn, renewed by its holder, is judged by its own changes (takeable).
func (e *Elector) nodeTakeable(l *coordinationv1.Lease, seenAt, now time.Time) (ok bool, at time.Time, check *replicaCheck) {
	holder := ptr.Deref(l.Spec.HolderIdentity, "")
	if holder == "" || holder == e.cfg.Identity || l.Annotations[AnnotationLiveness] != livenessReplica {
		ok, at := takeable(l, e.cfg.Identity, seenAt, now, e.cfg.LeaseDuration)
		return ok, at, nil
	}
	name, err := ReplicaLeaseName(holder)
	var rl *coordinationv1.Lease
	if err == nil {
		rl, _, _ = e.cachedLease(name)
	}
	if rl == nil {
		if expiry := seenAt.Add(e.cfg.LeaseDuration); now.Before(expiry) {
			return false, expiry, nil
		}
		return true, now, nil
	}
	e.mu.Lock()
	o, seen := e.replicas[name]
	if !seen || o.version != rl.ResourceVersion {
		o = observation{version: rl.ResourceVersion, at: now}
		e.replicas[name] = o
	}
	e.mu.Unlock()
	d := e.cfg.LeaseDuration
	if s := ptr.Deref(rl.Spec.LeaseDurationSeconds, 0); s > 0 {
		d = time.Duration(s) * time.Second
	}
	if expiry := o.at.Add(d); now.Before(expiry) {
		return false, expiry, nil
	}
	return true, now, &replicaCheck{name: name, version: o.version, duration: d}
}

// replicaCheck is another replica's Lease as observed unchanged for its
// duration.
type replicaCheck struct {
	name, version string
	duration      time.Duration
}

// stillExpired reads the replica Lease of check from the apiserver: a
// replica may take a node only if its holder's Lease is still the version
// it watched unchanged for its duration, whatever its own watch (late, or
// stuck) delivered since. If it changed, it is observed anew, and the
// wait is its duration.
func (e *Elector) stillExpired(ctx context.Context, check *replicaCheck) (time.Duration, bool) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	l, err := e.cfg.Leases.Leases(e.cfg.Namespace).Get(ctx, check.name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return 0, true
	case err != nil:
		e.log.Warn("reading a replica lease failed", "lease", check.name, "err", err)
		return e.cfg.RetryPeriod, false
	case l.ResourceVersion == check.version:
		return 0, true
	}
	e.mu.Lock()
	if o := e.replicas[check.name]; o.version == check.version {
		e.replicas[check.name] = observation{version: l.ResourceVersion, at: e.cfg.Clock.Now()}
	}
	e.mu.Unlock()
	return check.duration, false
}

// write updates a Lease, giving up at the renew deadline's length: a hung
// request must not outlive the hold it is meant to extend.
func (e *Elector) write(ctx context.Context, l *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.RenewDeadline)
	defer cancel()
	return e.cfg.Leases.Leases(e.cfg.Namespace).Update(ctx, l, metav1.UpdateOptions{})
}

// holdLocked records the write that took c's Lease in term, over version
// base.
func (e *Elector) holdLocked(c *contender, got *coordinationv1.Lease, term uint64, base string) {
	if !c.held {
		c.held = true
		c.lost = make(chan struct{})
		close(c.gained)
	}
	c.term, c.last, c.base, c.confirmed = term, got, base, false
	if l, exists, _ := e.cachedLease(c.lease); exists {
		e.observeLocked(c, l) // delivered already?
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
	if c.held {
		c.held = false
		close(c.lost)
		c.gained = make(chan struct{})
	}
}

func closedChan() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}
