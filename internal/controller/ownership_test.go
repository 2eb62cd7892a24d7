package controller

import (
	"context"
	"errors"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/sharding"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/internal/testwait"
	"github.com/remote-build-nodes/rbn/provider"
)

const leaseNS = "rbn-system"

// leasesOf is the fake clientset's Leases, as the Elector's client: the
// fake's watch sends no initial-events bookmark.
type leasesOf struct {
	coordinationv1client.LeasesGetter
}

func (leasesOf) IsWatchListSemanticsUnSupported() bool { return true }

// fakeRuntimes starts node runtimes that only wait for their end, and
// records each start and each stop, with whether this replica still held
// the node's Lease when the runtime stopped.
type fakeRuntimes struct {
	client *fake.Clientset

	mu      sync.Mutex
	started []string
	stopped []string
	// heldAtStop: the Lease named us when the runtime's context ended.
	heldAtStop []bool
	// gates hold a node's runtime in its stop until closed.
	gates map[string]chan struct{}
}

func (f *fakeRuntimes) start(ctx context.Context, _ runtimeDeps, name, hash string, _ *rbnv1.RemoteBuildNodeSpec, _, _ []byte, _ func()) (*nodeRuntime, error) {
	f.mu.Lock()
	f.started = append(f.started, name)
	f.mu.Unlock()
	rt := &nodeRuntime{name: name, hash: hash, host: &provider.Host{}, started: time.Now()}
	rt.parts = startGroup(ctx, []part{{"fake", func(ctx context.Context) error {
		<-ctx.Done()
		l, err := f.client.CoordinationV1().Leases(leaseNS).Get(context.Background(), sharding.LeasePrefix+name, metav1.GetOptions{})
		f.mu.Lock()
		f.stopped = append(f.stopped, name)
		f.heldAtStop = append(f.heldAtStop, err == nil && ptr.Deref(l.Spec.HolderIdentity, "") == "me")
		gate := f.gates[name]
		f.mu.Unlock()
		if gate != nil {
			<-gate
		}
		return nil
	}}}, func(error) {})
	return rt, nil
}

func (f *fakeRuntimes) counts() (started, stopped int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.started), len(f.stopped)
}

// shardHarness is a Controller whose Ownership is a real Elector on a fake
// clientset and a fake clock, with fake runtimes and a recording
// RemoteBuildNode API.
type shardHarness struct {
	t        *testing.T
	c        *Controller
	elector  *sharding.Elector
	client   *fake.Clientset
	clock    *clocktesting.FakeClock
	api      *rbnAPI
	runtimes *fakeRuntimes
	// failLeases makes every Lease write fail (cut off from the apiserver).
	failLeases atomic.Bool
	ctx        context.Context
}

func newShardHarness(t *testing.T, objs ...runtime.Object) *shardHarness {
	t.Helper()
	h := &shardHarness{t: t, client: fake.NewClientset(objs...),
		clock: clocktesting.NewFakeClock(time.Date(2026, 12, 3, 21, 0, 0, 0, time.UTC))}
	h.client.PrependReactor("update", "leases", func(clienttesting.Action) (bool, runtime.Object, error) {
		if h.failLeases.Load() {
			return true, nil, errors.New("partitioned from the apiserver")
		}
		return false, nil, nil
	})
	h.runtimes = &fakeRuntimes{client: h.client}
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	t.Cleanup(q.ShutDown)
	e, err := sharding.New(sharding.Config{
		Leases: leasesOf{h.client.CoordinationV1()}, Namespace: leaseNS, Identity: "me",
		Clock: h.clock, OnChange: q.Add,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.elector = e
	ctx, cancel := context.WithCancel(context.Background())
	h.ctx = ctx
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("elector: %v", err)
		}
	})

	shared := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	// Nothing listens there: a warm host keeps trying, writing nothing.
	key, kh := sshMaterialFor(t, "127.0.0.1:1")
	if err := shared.Core().V1().Secrets().Informer().GetIndexer().Add(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "rbn", Name: "ssh"},
		Data:       map[string][]byte{rbnv1.SecretKeyPrivateKey: key, rbnv1.SecretKeyKnownHosts: kh},
	}); err != nil {
		t.Fatal(err)
	}
	var rc *rbnClient
	h.api, rc = newRBNAPI(t)
	h.c = &Controller{
		cfg: &config.KubeletConfiguration{}, client: h.client, rbn: rc, shared: shared, own: shared, namespace: "rbn",
		rbnInformer: cache.NewSharedIndexInformer(&cache.ListWatch{}, &rbnv1.RemoteBuildNode{}, 0, cache.Indexers{}),
		broadcast:   recordingBroadcaster{rec: record.NewFakeRecorder(100)},
		queue:       q,
		restarts:    workqueue.NewTypedItemExponentialFailureRateLimiter[string](restartBackoffBase, restartBackoffMax),
		runtimes:    map[string]*nodeRuntime{}, retry: map[string]retryState{},
		owner: e, start: h.runtimes.start,
		warm: newWarmHosts(provider.NewHostPool(sshconn.NewPool())),
	}
	t.Cleanup(func() { stopAll(h.c) })
	t.Cleanup(h.c.warm.dropAll)
	return h
}

// addRBN puts a valid, finalized RemoteBuildNode in the controller's cache.
// stopAll stops every runtime of c.
func stopAll(c *Controller) {
	c.mu.Lock()
	rts := c.runtimes
	c.runtimes = map[string]*nodeRuntime{}
	c.mu.Unlock()
	for _, rt := range rts {
		rt.stop()
	}
}

func (h *shardHarness) addRBN(name string, deleting bool) {
	h.t.Helper()
	h.addRBNAt(name, 1, deleting)
}

// addRBNAt adds a RemoteBuildNode whose host is 127.0.0.1:port.
func (h *shardHarness) addRBNAt(name string, port int32, deleting bool) {
	h.t.Helper()
	r := &rbnv1.RemoteBuildNode{
		ObjectMeta: metav1.ObjectMeta{Name: name, Generation: 1, Finalizers: []string{rbnv1.Finalizer}},
		Spec: rbnv1.RemoteBuildNodeSpec{Address: "127.0.0.1", Port: port, User: "build",
			SSHSecretRef: rbnv1.SecretReference{Namespace: "rbn", Name: "ssh"}},
	}
	if deleting {
		r.DeletionTimestamp = ptr.To(metav1.Now())
	}
	if err := h.c.rbnInformer.GetIndexer().Add(r); err != nil {
		h.t.Fatal(err)
	}
}

// warm says whether the controller keeps name's host warm.
func (h *shardHarness) warm(name string) bool {
	h.c.warm.mu.Lock()
	defer h.c.warm.mu.Unlock()
	_, ok := h.c.warm.byNode[name]
	return ok
}

func (h *shardHarness) reconcile(name string) {
	h.t.Helper()
	if err := h.c.reconcile(h.ctx, name); err != nil {
		h.t.Fatalf("reconcile %s: %v", name, err)
	}
}

// queued waits until name is in the controller's queue and takes it out.
func (h *shardHarness) queued(name string) {
	h.t.Helper()
	testwait.Eventually(h.t, name+" queued", func() bool { return h.c.queue.Len() > 0 })
	got, _ := h.c.queue.Get()
	h.c.queue.Done(got)
	if got != name {
		h.t.Fatalf("queued %q, want %q", got, name)
	}
}

// acquire lets the Elector take name's Lease and reconciles the node.
func (h *shardHarness) acquire(name string) {
	h.t.Helper()
	h.addRBN(name, false)
	h.reconcile(name) // contends
	h.queued(name)    // acquired: OnChange
	h.reconcile(name)
}

func (h *shardHarness) leaseHolder(name string) string {
	h.t.Helper()
	l, err := h.client.CoordinationV1().Leases(leaseNS).Get(context.Background(), sharding.LeasePrefix+name, metav1.GetOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return ptr.Deref(l.Spec.HolderIdentity, "")
}

// otherHolds is n1's Lease, held and just renewed by another replica.
func otherHolds(now time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: leaseNS, Name: sharding.LeasePrefix + "n1", ResourceVersion: "1", Labels: map[string]string{sharding.LabelLease: "node"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("other"), LeaseDurationSeconds: ptr.To[int32](10),
			AcquireTime: &metav1.MicroTime{Time: now}, RenewTime: &metav1.MicroTime{Time: now}},
	}
}

// A node another replica holds is neither served nor written to: no
// runtime, no status, no finalizer work; once its Lease has stayed
// unchanged for its duration, this replica takes it and starts serving.
func TestNodeServedOnlyWhileHeld(t *testing.T) {
	now := time.Date(2026, 12, 3, 21, 0, 0, 0, time.UTC)
	h := newShardHarness(t, otherHolds(now))
	h.addRBN("n1", false)

	h.reconcile("n1")
	testwait.Eventually(t, "the elector waiting for the other replica's Lease to expire", h.clock.HasWaiters)
	h.reconcile("n1")
	if started, _ := h.runtimes.counts(); started != 0 {
		t.Fatalf("%d runtimes started for a node another replica holds (holder %s)", started, h.leaseHolder("n1"))
	}
	if reqs := h.api.requests(); len(reqs) != 0 {
		t.Fatalf("requests to the RemoteBuildNode of a node another replica holds: %+v", reqs)
	}
	// Standing by, its host is kept warm for a takeover.
	if !h.warm("n1") {
		t.Fatal("the host of a node another replica holds is not kept warm")
	}

	// Being deleted: only the holder finalizes.
	h.addRBN("n1", true)
	h.reconcile("n1")
	if reqs := h.api.requests(); len(reqs) != 0 {
		t.Fatalf("finalizer work on a node another replica holds: %+v", reqs)
	}
	if h.warm("n1") {
		t.Error("the host of a node being deleted is still kept warm")
	}
	for _, a := range h.client.Actions() {
		if a.GetResource().Resource != "leases" {
			t.Errorf("%s %s of a node another replica holds", a.GetVerb(), a.GetResource().Resource)
		}
	}
	h.addRBN("n1", false)

	// The other replica stopped renewing: the Lease is ours after its duration.
	h.clock.Step(10 * time.Second)
	h.queued("n1")
	h.reconcile("n1")
	if started, _ := h.runtimes.counts(); started != 1 {
		t.Fatalf("%d runtimes started once the Lease was ours, want 1", started)
	}
	if got := h.leaseHolder("n1"); got != "me" {
		t.Errorf("lease holder %q, want me", got)
	}
	reqs := h.api.requests()
	if len(reqs) != 1 || reqs[0].method != http.MethodPut || reqs[0].path != rbnPath+"n1/status" {
		t.Errorf("requests %+v, want the holder's status update", reqs)
	}
}

// When the hold ends (renewals failing past the renew deadline), the
// node's runtime is cancelled at once, without waiting for a reconcile, its
// kubelet API sessions end, and nothing more is written about the node.
func TestLostLeaseCancelsRuntime(t *testing.T) {
	h := newShardHarness(t)
	ports := newFakePorts(100, 101)
	h.c.SetNodePorts(ports)
	h.acquire("n1")
	if started, stopped := h.runtimes.counts(); started != 1 || stopped != 0 {
		t.Fatalf("started %d stopped %d, want one running runtime", started, stopped)
	}
	h.api.requests()

	h.failLeases.Store(true)
	h.clock.Step(sharding.DefaultRenewDeadline)
	testwait.Eventually(t, "runtime stopped after the lease was lost", func() bool {
		_, stopped := h.runtimes.counts()
		return stopped == 1
	})
	h.c.mu.Lock()
	left := len(h.c.runtimes)
	h.c.mu.Unlock()
	if left != 0 {
		t.Errorf("%d runtimes still registered", left)
	}
	testwait.Eventually(t, "the node's sessions ended", func() bool {
		ports.mu.Lock()
		defer ports.mu.Unlock()
		return slices.Contains(ports.calls, "end sessions n1")
	})
	h.queued("n1")
	h.reconcile("n1")
	if started, _ := h.runtimes.counts(); started != 1 {
		t.Errorf("runtime started again without the lease")
	}
	if reqs := h.api.requests(); len(reqs) != 0 {
		t.Errorf("requests to the RemoteBuildNode after the lease was lost: %+v", reqs)
	}
}

// An orderly stop (SIGTERM) stops every node's runtime while still holding
// its Lease, then releases every Lease, so the other replica takes over at
// once; a deleted RemoteBuildNode's Lease is released too.
func TestShutdownStopsThenReleasesAll(t *testing.T) {
	h := newShardHarness(t)
	for _, n := range []string{"n1", "n2"} {
		h.acquire(n)
	}
	if err := h.c.shutdown(h.ctx); err != nil {
		t.Fatal(err)
	}
	h.runtimes.mu.Lock()
	stopped, heldAtStop := slices.Clone(h.runtimes.stopped), slices.Clone(h.runtimes.heldAtStop)
	h.runtimes.mu.Unlock()
	slices.Sort(stopped)
	if !slices.Equal(stopped, []string{"n1", "n2"}) {
		t.Errorf("stopped %v, want n1 and n2", stopped)
	}
	if slices.Contains(heldAtStop, false) {
		t.Errorf("a runtime was still running after its lease was released (held at stop: %v)", heldAtStop)
	}
	for _, n := range []string{"n1", "n2"} {
		if got := h.leaseHolder(n); got != "" {
			t.Errorf("%s: lease still held by %q after shutdown", n, got)
		}
	}
}

// A node whose runtime is slow to stop holds up no other node's handover:
// each Lease is released as soon as its own runtime has stopped.
func TestShutdownReleasesEachNodeOnceStopped(t *testing.T) {
	h := newShardHarness(t)
	for _, n := range []string{"n1", "n2"} {
		h.acquire(n)
	}
	gate := make(chan struct{})
	h.runtimes.mu.Lock()
	h.runtimes.gates = map[string]chan struct{}{"n1": gate}
	h.runtimes.mu.Unlock()
	done := make(chan error, 1)
	go func() { done <- h.c.shutdown(h.ctx) }()
	testwait.Eventually(t, "n2 released while n1 is still stopping", func() bool {
		return h.leaseHolder("n2") == ""
	})
	if got := h.leaseHolder("n1"); got != "me" {
		t.Errorf("n1's lease held by %q while its runtime still stops, want me", got)
	}
	close(gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := h.leaseHolder("n1"); got != "" {
		t.Errorf("n1: lease still held by %q after shutdown", got)
	}
}

func TestDeletedNodeReleased(t *testing.T) {
	h := newShardHarness(t)
	h.acquire("n1")
	if err := h.c.rbnInformer.GetIndexer().Delete(&rbnv1.RemoteBuildNode{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}); err != nil {
		t.Fatal(err)
	}
	h.reconcile("n1")
	if _, stopped := h.runtimes.counts(); stopped != 1 {
		t.Errorf("runtime of a deleted node not stopped")
	}
	if got := h.leaseHolder("n1"); got != "" {
		t.Errorf("lease of a deleted node still held by %q", got)
	}
}

// silentHost accepts one TCP connection and never speaks SSH: the host's
// first connection attempt stays under way until the returned conn is
// closed. Its port refuses connections from then on.
func silentHost(t *testing.T) (port int32, conn <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		defer ln.Close()
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		select {
		case c := <-accepted:
			c.Close()
		default:
		}
	})
	return int32(ln.Addr().(*net.TCPAddr).Port), accepted
}

// firstAttempt waits for the first SSH connection attempt to reach node's
// silent host; past a minute it fails, with what the controller wrote of
// the node (once seen hanging for 10 minutes in CI, the client backing off
// after attempts that never reached the listener).
func (h *shardHarness) firstAttempt(accepted <-chan net.Conn, node string) net.Conn {
	h.t.Helper()
	select {
	case c := <-accepted:
		return c
	case <-time.After(time.Minute):
		var writes []string
		for _, r := range h.api.requests() {
			if strings.Contains(r.path, node) {
				writes = append(writes, r.path+" "+r.body)
			}
		}
		h.t.Fatalf("no SSH connection attempt reached %s's host in a minute; what was written of it: %q", node, writes)
		return nil
	}
}

// A replica is ready (and a rollout stops an old one) only once every node
// it found at start has been reconciled and the first connection attempt to
// each of their hosts has ended; a node added later, still connecting,
// does not take it out of service.
func TestReadyWaitsForTheWarmHosts(t *testing.T) {
	h := newShardHarness(t)
	port, accepted := silentHost(t)
	h.addRBNAt("n1", port, false)
	h.c.mu.Lock()
	h.c.unvisited = map[string]bool{"n1": true}
	h.c.mu.Unlock()
	if err := h.c.Ready(); err == nil {
		t.Fatal("ready before the caches synced")
	}
	h.c.started.Store(true)
	if err := h.c.Ready(); err == nil || !strings.Contains(err.Error(), "not reconciled") {
		t.Fatalf("Ready before n1 was reconciled: %v, want not reconciled", err)
	}
	h.reconcile("n1")
	h.queued("n1")                         // the Lease is taken: the Elector has synced
	conn := h.firstAttempt(accepted, "n1") // the host is in its SSH handshake
	if err := h.c.Ready(); err == nil || !strings.Contains(err.Error(), "connecting to the build hosts of n1") {
		t.Fatalf("Ready while n1's host connects: %v, want connecting to the build hosts of n1", err)
	}
	conn.Close() // the first attempt fails: the host is settled, NotReady
	testwait.Eventually(t, "ready once n1's host's first attempt failed", func() bool { return h.c.Ready() == nil })

	port2, accepted2 := silentHost(t)
	h.addRBNAt("n2", port2, false)
	h.reconcile("n2")
	h.queued("n2")
	h.firstAttempt(accepted2, "n2")
	if err := h.c.Ready(); err != nil {
		t.Errorf("a node added later took the replica out of service: %v", err)
	}
}

// A RemoteBuildNode named like another kubelet's Node is refused: no
// runtime (which would rewrite the Node's taints and labels and serve its
// pods), an Invalid status saying why, and it is looked at again later.
func TestNodeNameTakenRefused(t *testing.T) {
	h := newShardHarness(t, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"kubernetes.io/hostname": "n1"}}})
	h.acquire("n1")
	if started, _ := h.runtimes.counts(); started != 0 {
		t.Fatalf("a runtime started for another kubelet's Node")
	}
	var status string
	for _, r := range h.api.requests() {
		if strings.HasSuffix(r.path, "/status") {
			status = r.body
		}
	}
	if !strings.Contains(status, ReasonNodeNameTaken) || !strings.Contains(status, `"phase":"Invalid"`) {
		t.Errorf("status written: %s, want phase Invalid with reason %s", status, ReasonNodeNameTaken)
	}
	n, err := h.client.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Spec.Taints) != 0 || n.Labels[rbnv1.LabelRemoteBuildNode] != "" {
		t.Errorf("the other Node was changed: %+v", n)
	}
}
