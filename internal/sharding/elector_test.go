package sharding

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/remote-build-nodes/rbn/internal/testwait"
)

const ns = "rbn-system"

// apiserver is a fake clientset whose Leases get resource versions and
// optimistic concurrency, as a real apiserver's do (the fake tracker alone
// accepts any update).
type apiserver struct {
	cs *fake.Clientset
	mu sync.Mutex
	rv int
}

func newAPIServer() *apiserver {
	s := &apiserver{cs: fake.NewClientset()}
	gvr := coordinationv1.SchemeGroupVersion.WithResource("leases")
	s.cs.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		s.mu.Lock()
		defer s.mu.Unlock()
		s.rv++
		l.ResourceVersion = strconv.Itoa(s.rv)
		if err := s.cs.Tracker().Create(gvr, l, l.Namespace); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	s.cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		s.mu.Lock()
		defer s.mu.Unlock()
		cur, err := s.cs.Tracker().Get(gvr, l.Namespace, l.Name)
		if err != nil {
			return true, nil, err
		}
		if cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), l.Name, errors.New("the object has been modified"))
		}
		s.rv++
		l.ResourceVersion = strconv.Itoa(s.rv)
		if err := s.cs.Tracker().Update(gvr, l, l.Namespace); err != nil {
			return true, nil, err
		}
		return true, l, nil
	})
	s.cs.PrependReactor("delete", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		d := a.(k8stesting.DeleteActionImpl)
		s.mu.Lock()
		defer s.mu.Unlock()
		cur, err := s.cs.Tracker().Get(gvr, d.Namespace, d.Name)
		if err != nil {
			return true, nil, err
		}
		if p := d.DeleteOptions.Preconditions; p != nil && p.ResourceVersion != nil && *p.ResourceVersion != cur.(*coordinationv1.Lease).ResourceVersion {
			return true, nil, apierrors.NewConflict(gvr.GroupResource(), d.Name, errors.New("the object has been modified"))
		}
		return true, nil, s.cs.Tracker().Delete(gvr, d.Namespace, d.Name)
	})
	return s
}

func (s *apiserver) lease(t *testing.T, node string) *coordinationv1.Lease {
	t.Helper()
	name, _ := LeaseName(node)
	l, err := s.cs.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease of %s: %v", node, err)
	}
	return l
}

// replicaLease is id's replica Lease, nil if there is none.
func (s *apiserver) replicaLease(t *testing.T, id string) *coordinationv1.Lease {
	t.Helper()
	name, _ := ReplicaLeaseName(id)
	l, err := s.cs.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("get replica lease of %s: %v", id, err)
	}
	return l
}

var errPartitioned = errors.New("partitioned from the apiserver")

// flakyLeases fails every read and write while fail is set (a replica cut
// off from the apiserver); its watch keeps delivering.
type flakyLeases struct {
	coordinationv1client.LeasesGetter
	fail *atomic.Bool
}

// IsWatchListSemanticsUnSupported: the fake clientset's watch sends no
// initial-events bookmark.
func (flakyLeases) IsWatchListSemanticsUnSupported() bool { return true }

func (f flakyLeases) Leases(namespace string) coordinationv1client.LeaseInterface {
	return flakyLease{f.LeasesGetter.Leases(namespace), f.fail}
}

type flakyLease struct {
	coordinationv1client.LeaseInterface
	fail *atomic.Bool
}

func (f flakyLease) Create(ctx context.Context, l *coordinationv1.Lease, o metav1.CreateOptions) (*coordinationv1.Lease, error) {
	if f.fail.Load() {
		return nil, errPartitioned
	}
	return f.LeaseInterface.Create(ctx, l, o)
}

func (f flakyLease) Update(ctx context.Context, l *coordinationv1.Lease, o metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	if f.fail.Load() {
		return nil, errPartitioned
	}
	return f.LeaseInterface.Update(ctx, l, o)
}

func (f flakyLease) Delete(ctx context.Context, name string, o metav1.DeleteOptions) error {
	if f.fail.Load() {
		return errPartitioned
	}
	return f.LeaseInterface.Delete(ctx, name, o)
}

func (f flakyLease) Get(ctx context.Context, name string, o metav1.GetOptions) (*coordinationv1.Lease, error) {
	if f.fail.Load() {
		return nil, errPartitioned
	}
	return f.LeaseInterface.Get(ctx, name, o)
}

type replica struct {
	id      string
	e       *Elector
	fail    atomic.Bool
	cancel  context.CancelFunc
	done    chan error
	mu      sync.Mutex
	changes []string
}

func (r *replica) changed() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.changes...)
}

// crash stops the replica without releasing anything, as kill -9 would.
func (r *replica) crash(t *testing.T) {
	t.Helper()
	r.cancel()
	err := <-r.done
	r.done <- err // for the cleanup's wait
	if err != nil {
		t.Fatalf("%s: Run: %v", r.id, err)
	}
}

type harness struct {
	t     *testing.T
	api   *apiserver
	clock *clocktesting.FakeClock
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, api: newAPIServer(), clock: clocktesting.NewFakeClock(time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC))}
}

// start runs a replica with the default durations on the harness's clock.
func (h *harness) start(id string) *replica {
	h.t.Helper()
	r := &replica{id: id, done: make(chan error, 1)}
	e, err := New(Config{
		Leases:    flakyLeases{h.api.cs.CoordinationV1(), &r.fail},
		Namespace: ns, Identity: id, Clock: h.clock,
		OnChange: func(node string) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.changes = append(r.changes, node)
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	r.e = e
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- e.Run(ctx) }()
	h.t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

func acquire(t *testing.T, r *replica, node string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.e.Acquire(ctx, node); err != nil {
		t.Fatalf("%s: acquire %s: %v", r.id, node, err)
	}
}

// seenCurrent waits until r has seen the Lease's current version.
func (h *harness) seenCurrent(r *replica, node string) {
	h.t.Helper()
	rv := h.api.lease(h.t, node).ResourceVersion
	testwait.Eventually(h.t, fmt.Sprintf("%s to see version %s of %s's lease", r.id, rv, node), func() bool {
		r.e.mu.Lock()
		defer r.e.mu.Unlock()
		c := r.e.nodes[node]
		return c != nil && c.seenVersion == rv
	})
}

// renewed waits until r's renewal of its replica Lease at the clock's
// current time is stored.
func (h *harness) renewed(r *replica) {
	h.t.Helper()
	now := h.clock.Now()
	testwait.Eventually(h.t, fmt.Sprintf("%s to renew its lease at %s", r.id, now), func() bool {
		l := h.api.replicaLease(h.t, r.id)
		return l != nil && ptr.Deref(l.Spec.HolderIdentity, "") == r.id && l.Spec.RenewTime != nil && !l.Spec.RenewTime.Time.Before(now)
	})
}

// advance moves the clock by d in steps of at most a renew interval,
// waiting after each for the live replicas' renewals, as a real clock would
// let them renew.
func (h *harness) advance(d time.Duration, live ...*replica) {
	h.t.Helper()
	for d > 0 {
		step := min(d, DefaultRenewInterval)
		h.clock.Step(step)
		d -= step
		if step == DefaultRenewInterval {
			for _, r := range live {
				h.renewed(r)
			}
		}
	}
}

// takenAfter advances the clock by d less a millisecond, checks that r has
// not taken node "n" (else fails with early), then by the millisecond, and
// waits for r to take it.
func (h *harness) takenAfter(r *replica, d time.Duration, early string) {
	h.t.Helper()
	h.advance(d-time.Millisecond, r)
	if r.e.Held("n") {
		h.t.Fatal(early)
	}
	h.clock.Step(time.Millisecond)
	testwait.Eventually(h.t, r.id+" to take the node over", func() bool { return r.e.Held("n") })
}

// stepUntilRenewed moves the clock a little at a time until r renewed its
// replica Lease after the clock's current time: for a replica whose
// renewals fell out of step with the clock's.
func (h *harness) stepUntilRenewed(r *replica) {
	h.t.Helper()
	since := h.clock.Now()
	testwait.Eventually(h.t, fmt.Sprintf("%s to renew its lease after %s", r.id, since), func() bool {
		if l := h.api.replicaLease(h.t, r.id); l != nil && l.Spec.RenewTime != nil && l.Spec.RenewTime.Time.After(since) {
			return true
		}
		h.clock.Step(DefaultRetryPeriod / 4)
		return false
	})
}

// seenReplica waits until r has seen the current version of other's
// replica Lease.
func (h *harness) seenReplica(r, other *replica) {
	h.t.Helper()
	l := h.api.replicaLease(h.t, other.id)
	testwait.Eventually(h.t, fmt.Sprintf("%s to see version %s of %s's replica lease", r.id, l.ResourceVersion, other.id), func() bool {
		r.e.mu.Lock()
		defer r.e.mu.Unlock()
		return r.e.replicas[l.Name].version == l.ResourceVersion
	})
}

// holderAndContender starts a holding node n and b contending for it,
// having seen a's Lease.
func (h *harness) holderAndContender() (a, b *replica) {
	h.t.Helper()
	a = h.start("a")
	b = h.start("b")
	acquire(h.t, a, "n")
	if err := b.e.Contend("n"); err != nil {
		h.t.Fatal(err)
	}
	h.seenCurrent(b, "n")
	h.seenReplica(b, a)
	return a, b
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestAcquireCreatesTheNodeLease(t *testing.T) {
	h := newHarness(t)
	a := h.start("rbn-kubelet-a")
	acquire(t, a, "builder-1")

	if !a.e.Held("builder-1") || closed(a.e.Lost("builder-1")) {
		t.Fatal("after Acquire: not held, or Lost already closed")
	}
	// The node's Lease names the replica, held through the replica's own
	// Lease (an hour for a replica of an earlier version, which would judge
	// it by its own changes); the replica's Lease is the short one.
	l := h.api.lease(t, "builder-1")
	if l.Name != "rbn-node-builder-1" || ptr.Deref(l.Spec.HolderIdentity, "") != "rbn-kubelet-a" ||
		ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != 3600 || l.Labels[LabelLease] != "node" || l.Annotations[AnnotationLiveness] != "replica-lease" {
		t.Errorf("lease = %s holder %q duration %d labels %v annotations %v", l.Name, ptr.Deref(l.Spec.HolderIdentity, ""),
			ptr.Deref(l.Spec.LeaseDurationSeconds, 0), l.Labels, l.Annotations)
	}
	r := h.api.replicaLease(t, "rbn-kubelet-a")
	if r == nil || r.Name != "rbn-replica-rbn-kubelet-a" || ptr.Deref(r.Spec.HolderIdentity, "") != "rbn-kubelet-a" ||
		ptr.Deref(r.Spec.LeaseDurationSeconds, 0) != 10 || r.Labels[LabelLease] != "replica" {
		t.Errorf("replica lease = %+v", r)
	}
	// OnChange follows the hold that Acquire waits for, from the
	// contender's goroutine.
	testwait.Eventually(t, "OnChange for builder-1", func() bool { return len(a.changed()) > 0 })
	if got := a.changed(); len(got) != 1 || got[0] != "builder-1" {
		t.Errorf("OnChange calls = %v, want [builder-1]", got)
	}
	if a.e.Held("builder-2") || !closed(a.e.Lost("builder-2")) {
		t.Error("a node never contended for reads as held")
	}
}

// The holder renews its replica Lease, not the node's: the node Lease is
// written once, and b never takes the node.
func TestHolderRenewsAndKeepsTheNode(t *testing.T) {
	h := newHarness(t)
	a, b := h.holderAndContender()
	nodeVersion := h.api.lease(t, "n").ResourceVersion
	// Three lease durations of renewals.
	for range 10 {
		h.clock.Step(DefaultRenewInterval)
		h.renewed(a)
		h.seenReplica(b, a)
		if !a.e.Held("n") || b.e.Held("n") {
			t.Fatalf("at %s: a held %v, b held %v", h.clock.Now(), a.e.Held("n"), b.e.Held("n"))
		}
	}
	l := h.api.lease(t, "n")
	if got := ptr.Deref(l.Spec.LeaseTransitions, -1); got != 0 {
		t.Errorf("transitions = %d, want 0", got)
	}
	if l.ResourceVersion != nodeVersion {
		t.Errorf("the node lease was written while held (version %s, was %s)", l.ResourceVersion, nodeVersion)
	}
}

func TestHolderLosesTheNodeWhenItCannotRenew(t *testing.T) {
	h := newHarness(t)
	a := h.start("a")
	acquire(t, a, "n")
	lost := a.e.Lost("n")
	a.fail.Store(true)

	h.clock.Step(DefaultRenewDeadline - time.Millisecond)
	if !a.e.Held("n") || closed(lost) {
		t.Fatal("lost before the renew deadline")
	}
	h.clock.Step(time.Millisecond)
	if a.e.Held("n") {
		t.Fatal("still held at the renew deadline")
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("Lost not closed at the renew deadline")
	}
	testwait.Eventually(t, "OnChange for the loss", func() bool { return len(a.changed()) == 2 })

	// Back in touch, and nobody took it: a holds it again, once its next
	// term wrote the node's Lease again.
	before := h.api.lease(t, "n").ResourceVersion
	a.fail.Store(false)
	h.clock.Step(DefaultRetryPeriod)
	testwait.Eventually(t, "a to hold the node again", func() bool { return a.e.Held("n") })
	if l := h.api.lease(t, "n"); l.ResourceVersion == before || ptr.Deref(l.Spec.HolderIdentity, "") != "a" {
		t.Errorf("node lease version %s holder %q: not written again by a's new term", l.ResourceVersion, ptr.Deref(l.Spec.HolderIdentity, ""))
	}
}

func TestTakeoverAfterExpiry(t *testing.T) {
	h := newHarness(t)
	a, b := h.holderAndContender()
	a.crash(t)

	h.takenAfter(b, DefaultLeaseDuration, "b took the node before the lease expired")
	l := h.api.lease(t, "n")
	if ptr.Deref(l.Spec.HolderIdentity, "") != "b" || ptr.Deref(l.Spec.LeaseTransitions, 0) != 1 {
		t.Errorf("lease holder %q transitions %d, want b and 1", ptr.Deref(l.Spec.HolderIdentity, ""), ptr.Deref(l.Spec.LeaseTransitions, 0))
	}
}

// A holder cut off from the apiserver stops serving before the other
// replica may start: never two holders, on one timeline.
func TestNeverTwoHoldersAcrossAPartition(t *testing.T) {
	h := newHarness(t)
	a, b := h.holderAndContender()
	a.fail.Store(true)
	lastRenewal := h.clock.Now()

	step := 250 * time.Millisecond
	for h.clock.Since(lastRenewal) < 2*DefaultLeaseDuration {
		h.clock.Step(step)
		if a.e.Held("n") && b.e.Held("n") {
			t.Fatalf("at +%s both replicas hold the node", h.clock.Since(lastRenewal))
		}
		if b.e.Held("n") {
			break
		}
	}
	// b's retries run on its own goroutine: on a busy machine it may not
	// have tried yet when the loop ends, so time goes on until it has.
	testwait.Eventually(t, "b to take the node over", func() bool {
		if b.e.Held("n") {
			return true
		}
		if a.e.Held("n") {
			t.Fatalf("at +%s a still holds the node", h.clock.Since(lastRenewal))
		}
		h.clock.Step(step)
		return false
	})
	b.e.mu.Lock()
	takenAt := b.e.nodes["n"].last.Spec.AcquireTime.Time
	b.e.mu.Unlock()
	if takenAt.Before(lastRenewal.Add(DefaultLeaseDuration)) {
		t.Errorf("b took the node %s after a's last renewal, before the lease duration", takenAt.Sub(lastRenewal))
	}
	if a.e.Held("n") {
		t.Error("a still holds the node")
	}

	// a comes back: it finds b holding the node and does not take it back.
	a.fail.Store(false)
	for range 4 {
		h.stepUntilRenewed(b)
		h.seenCurrent(a, "n")
		if a.e.Held("n") {
			t.Fatal("a took the node back from b")
		}
	}
}

func TestReleaseHandsTheNodeOverAtOnce(t *testing.T) {
	h := newHarness(t)
	a, b := h.holderAndContender()
	lost := a.e.Lost("n")

	if err := a.e.ReleaseAll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a.e.Held("n") || !closed(lost) {
		t.Fatal("a still holds the node after ReleaseAll")
	}
	// No clock step: b takes the released lease as soon as it sees it.
	testwait.Eventually(t, "b to take the released node", func() bool { return b.e.Held("n") })
	if got := ptr.Deref(h.api.lease(t, "n").Spec.HolderIdentity, ""); got != "b" {
		t.Errorf("holder = %q, want b", got)
	}
	if l := h.api.replicaLease(t, "a"); l != nil {
		t.Errorf("a's replica lease left behind: %+v", l)
	}
}

func TestRestartedReplicaTakesItsLeaseBack(t *testing.T) {
	h := newHarness(t)
	a := h.start("a")
	acquire(t, a, "n")
	a.crash(t)

	// A new process of the same pod, with no time passing.
	again := h.start("a")
	acquire(t, again, "n")
	if got := ptr.Deref(h.api.lease(t, "n").Spec.LeaseTransitions, -1); got != 0 {
		t.Errorf("transitions = %d, want 0 (same holder)", got)
	}
}

func TestAcquireEndsWithItsContext(t *testing.T) {
	h := newHarness(t)
	a := h.start("a")
	b := h.start("b")
	acquire(t, a, "n")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.e.Acquire(ctx, "n"); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestNewValidatesItsConfiguration(t *testing.T) {
	good := func() Config {
		return Config{Leases: fake.NewClientset().CoordinationV1(), Namespace: ns, Identity: "a"}
	}
	if _, err := New(good()); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no client":                func(c *Config) { c.Leases = nil },
		"no namespace":             func(c *Config) { c.Namespace = "" },
		"no identity":              func(c *Config) { c.Identity = "" },
		"deadline beyond duration": func(c *Config) { c.RenewDeadline = 20 * time.Second },
		"interval beyond deadline": func(c *Config) { c.RenewInterval = 8 * time.Second },
		"retry beyond interval":    func(c *Config) { c.RetryPeriod = 4 * time.Second },
		"fraction of a second":     func(c *Config) { c.LeaseDuration = 10500 * time.Millisecond },
		"negative retry":           func(c *Config) { c.RetryPeriod = -time.Second },
	} {
		t.Run(name, func(t *testing.T) {
			c := good()
			mutate(&c)
			if _, err := New(c); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("New = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestContendRefusesANodeNameTooLongForALease(t *testing.T) {
	e, err := New(Config{Leases: fake.NewClientset().CoordinationV1(), Namespace: ns, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	long := make([]byte, 250)
	for i := range long {
		long[i] = 'a'
	}
	if err := e.Contend(string(long)); err == nil {
		t.Error("Contend accepted a node whose lease name exceeds 253 characters")
	}
}

// A replica refused the Leases (its Role or RoleBinding missing) could never
// serve a node: Run fails at once, saying why, instead of waiting forever.
func TestRunFailsWhenTheLeasesAreDenied(t *testing.T) {
	cs := fake.NewClientset()
	forbidden := apierrors.NewForbidden(coordinationv1.Resource("leases"), "", errors.New(`User "system:serviceaccount:rbn-system:rbn-kubelet" cannot list resource "leases"`))
	cs.PrependReactor("list", "leases", func(k8stesting.Action) (bool, runtime.Object, error) { return true, nil, forbidden })
	cs.PrependWatchReactor("leases", func(k8stesting.Action) (bool, watch.Interface, error) { return true, nil, forbidden })
	e, err := New(Config{Leases: cs.CoordinationV1(), Namespace: ns, Identity: "a", Clock: clocktesting.NewFakeClock(time.Now())})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Run(t.Context()) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrLeasesDenied) || !strings.Contains(err.Error(), "cannot list resource") {
			t.Errorf("Run = %v, want ErrLeasesDenied with the apiserver's reason", err)
		}
	case <-time.After(testwait.Timeout):
		t.Fatal("Run still waiting for Leases it is not allowed to read")
	}
}

// TestLossToldOnce: the watchdog ends a term past its renew deadline while
// the renewal loop, which saw the term before, finds it gone too: the loss
// of each node is told (OnChange) once, by whoever ended the term. It was told twice,
// which TestHolderLosesTheNodeWhenItCannotRenew caught under load.
func TestLossToldOnce(t *testing.T) {
	h := newHarness(t)
	a := h.start("a")
	acquire(t, a, "n")
	testwait.Eventually(t, "OnChange for the hold", func() bool { return len(a.changed()) == 1 })
	a.fail.Store(true)
	a.e.mu.Lock()
	start := a.e.term.renewedAt
	a.e.mu.Unlock()
	// The watchdog's call, made here (the clock stays, so its own never
	// fires), then the term loop's renewal.
	a.e.expireTerm(start)
	a.e.renewTerm(context.Background())
	if got := a.changed(); len(got) != 2 {
		t.Fatalf("OnChange calls %q, want 2 (the hold, its loss)", got)
	}
}

// movingClock moves its fake clock by the duration of the next timer in
// the moment between the caller reading the time and arming the timer,
// once armed is set: an interleaving a goroutine stepping the clock can
// make.
type movingClock struct {
	*clocktesting.FakeClock
	armed atomic.Bool
}

func (c *movingClock) NewTimer(d time.Duration) clock.Timer {
	if c.armed.CompareAndSwap(true, false) {
		c.Step(d)
	}
	return c.FakeClock.NewTimer(d)
}

// TestTimerAtWithTheClockMovingWhileArming: a timer for a time the clock
// reaches between timerAt reading it and arming the timer is due at once.
// The renewal loop armed it for the duration read before, so it fired one
// interval late, which TestHolderRenewsAndKeepsTheNode caught under load,
// waiting for a renewal the fake clock never reached.
func TestTimerAtWithTheClockMovingWhileArming(t *testing.T) {
	h := newHarness(t)
	mc := &movingClock{FakeClock: h.clock}
	e := &Elector{cfg: Config{Clock: mc}}
	began := h.clock.Now()
	at := began.Add(DefaultRenewInterval)

	mc.armed.Store(true)
	due, stop := e.timerAt(began, DefaultRenewInterval)
	defer stop()
	if !h.clock.Now().Equal(at) {
		t.Fatalf("clock at %s, want %s", h.clock.Now(), at)
	}
	if !fired(due) {
		t.Error("not due with the clock at its time")
	}

	// Unmoved, it waits for its time, and no longer.
	due, stop = e.timerAt(at, DefaultRenewInterval)
	defer stop()
	h.clock.Step(DefaultRenewInterval - time.Millisecond)
	if fired(due) {
		t.Fatal("due before its time")
	}
	h.clock.Step(time.Millisecond)
	select {
	case <-due:
	case <-time.After(testwait.Timeout):
		t.Fatal("not due at its time")
	}
}

// fired reports whether a timer's channel has fired, without waiting.
func fired(ch <-chan time.Time) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A contender whose watch fell behind (here: its cache still has an old
// version of the holder's replica Lease, seen long ago) reads the Lease
// afresh before taking the node, and does not take it from a holder that
// renewed meanwhile.
func TestTakeoverReadsTheHoldersLeaseAfresh(t *testing.T) {
	h := newHarness(t)
	a, b := h.holderAndContender()
	name, _ := ReplicaLeaseName("a")
	b.e.mu.Lock()
	current := b.e.replicas[name]
	b.e.mu.Unlock()

	// a keeps renewing; b's cache is made to show a's Lease as it was
	// before, first seen a lease duration ago.
	h.clock.Step(DefaultRenewInterval)
	h.renewed(a)
	h.seenReplica(b, a)
	obj, _, _ := b.e.informer.GetStore().GetByKey(ns + "/" + name)
	old := obj.(*coordinationv1.Lease).DeepCopy()
	old.ResourceVersion = current.version
	if err := b.e.informer.GetStore().Update(old); err != nil {
		t.Fatal(err)
	}
	b.e.mu.Lock()
	b.e.replicas[name] = observation{version: current.version, at: h.clock.Now().Add(-DefaultLeaseDuration)}
	c := b.e.nodes["n"]
	b.e.mu.Unlock()
	if wait := b.e.tryAcquire(context.Background(), c); wait != DefaultLeaseDuration {
		t.Errorf("tryAcquire waits %s, want a lease duration from the fresh read", wait)
	}
	if b.e.Held("n") || !a.e.Held("n") {
		t.Fatalf("b held %v, a held %v: b took the node from a live holder", b.e.Held("n"), a.e.Held("n"))
	}
	if got := ptr.Deref(h.api.lease(t, "n").Spec.HolderIdentity, ""); got != "a" {
		t.Errorf("holder = %q, want a", got)
	}
}

// A node Lease of an earlier version of rbn (no liveness annotation,
// renewed by its holder) is judged by its own changes, as that version
// does: taken once unchanged for its duration, not before.
func TestAnEarlierVersionsLeaseIsJudgedByItsOwnChanges(t *testing.T) {
	h := newHarness(t)
	name, _ := LeaseName("n")
	now := h.clock.Now()
	if _, err := h.api.cs.CoordinationV1().Leases(ns).Create(context.Background(), &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{LabelLease: "node"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("old"), LeaseDurationSeconds: ptr.To[int32](10),
			RenewTime: ptr.To(metav1.NewMicroTime(now)), AcquireTime: ptr.To(metav1.NewMicroTime(now))},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	b := h.start("b")
	if err := b.e.Contend("n"); err != nil {
		t.Fatal(err)
	}
	h.seenCurrent(b, "n")
	h.renewed(b)
	h.takenAfter(b, DefaultLeaseDuration, "b took the node before the old holder's lease expired")
	if l := h.api.lease(t, "n"); l.Annotations[AnnotationLiveness] != "replica-lease" || ptr.Deref(l.Spec.LeaseDurationSeconds, 0) != 3600 {
		t.Errorf("taken lease: annotations %v, duration %d; want it held through b's replica lease", l.Annotations, ptr.Deref(l.Spec.LeaseDurationSeconds, 0))
	}
}

// A node Lease naming a replica whose own Lease is gone is taken once it
// has not changed for the lease duration.
func TestANodeOfAReplicaWithoutALeaseIsTakenAfterTheLeaseDuration(t *testing.T) {
	h := newHarness(t)
	a, b := h.holderAndContender()
	a.crash(t)
	name, _ := ReplicaLeaseName("a")
	if err := h.api.cs.CoordinationV1().Leases(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, "b to see a's replica lease gone", func() bool {
		b.e.mu.Lock()
		defer b.e.mu.Unlock()
		_, ok := b.e.replicas[name]
		return !ok
	})
	h.takenAfter(b, DefaultLeaseDuration, "b took the node before its lease had been unchanged for the lease duration")
}

// The replica Lease of a replica gone is deleted by a live one once it has
// not changed for replicaLeaseGC lease durations.
func TestTheLeaseOfAReplicaGoneIsDeleted(t *testing.T) {
	h := newHarness(t)
	a, b := h.holderAndContender()
	a.crash(t)
	gone := time.Duration(replicaLeaseGC) * DefaultLeaseDuration
	start := h.clock.Now()
	for h.clock.Since(start) < gone-DefaultRenewInterval {
		h.advance(DefaultRenewInterval, b)
		if h.api.replicaLease(t, "a") == nil {
			t.Fatalf("a's lease deleted %s after a went, before %s", h.clock.Since(start), gone)
		}
	}
	// The renewal at the GC age deletes it.
	h.advance(DefaultRenewInterval, b)
	testwait.Eventually(t, "a's lease to be deleted", func() bool { return h.api.replicaLease(t, "a") == nil })
	if h.api.replicaLease(t, "b") == nil || !b.e.Held("n") {
		t.Error("b's own lease deleted, or b lost the node")
	}
}

// Where RBAC refuses the delete (the manifests of an earlier rbn), the
// Lease of a replica gone stays, and is not tried again at every renewal.
func TestTheLeaseOfAReplicaGoneStaysWhereDeletingIsRefused(t *testing.T) {
	h := newHarness(t)
	var deletes atomic.Int32
	h.api.cs.PrependReactor("delete", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		deletes.Add(1)
		return true, nil, apierrors.NewForbidden(coordinationv1.Resource("leases"), "rbn-replica-a", errors.New("no delete verb"))
	})
	a, b := h.holderAndContender()
	a.crash(t)
	h.advance(time.Duration(replicaLeaseGC+3)*DefaultLeaseDuration, b)
	if n := deletes.Load(); n != 1 {
		t.Errorf("%d deletes tried, want 1", n)
	}
	if h.api.replicaLease(t, "a") == nil {
		t.Error("a's lease gone")
	}
}
