// Package controller reconciles RemoteBuildNodes: for each one it runs a node
// runtime (SSH connection, virtual-kubelet node and pod controllers), restarts
// it when the spec or its Secret changes, writes what it sees into the
// RemoteBuildNode's status, and on deletion removes the node and its pods.
package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/egress"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/nodeidentity"
	"github.com/remote-build-nodes/rbn/internal/nodeservice"
	"github.com/remote-build-nodes/rbn/internal/podnet"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/internal/svcrelay"
	"github.com/remote-build-nodes/rbn/provider"
)

// Reasons for a RemoteBuildNode that cannot be served at all.
const (
	ReasonInvalidSpec    = "InvalidSpec"
	ReasonSecretNotFound = "SSHSecretNotFound"
	ReasonSecretInvalid  = "SSHSecretInvalid"
	// ReasonSecretNamespace: the SSH Secret is outside rbn-kubelet's own
	// namespace, the only one whose Secrets it reads.
	ReasonSecretNamespace = "SSHSecretOutsideNamespace"
	// ReasonNodeNameTaken: a Node of the RemoteBuildNode's name exists
	// that is not a remote build node (another kubelet's, say).
	ReasonNodeNameTaken = "NodeNameTaken"
)

// foreignNodeRecheck is how often a RemoteBuildNode refused for
// NodeNameTaken is looked at again: nothing watches Nodes for it.
const foreignNodeRecheck = time.Minute

const secretIndex = "sshSecret"

// Controller serves every RemoteBuildNode of the cluster.
type Controller struct {
	cfg    *config.KubeletConfiguration
	client kubernetes.Interface
	rbn    *rbnClient
	shared informers.SharedInformerFactory
	// own watches rbn-kubelet's own namespace: the SSH Secrets.
	own         informers.SharedInformerFactory
	namespace   string
	rbnInformer cache.SharedIndexInformer
	// podIndex tells the node of a pod, for the kubelet API.
	podIndex  cache.SharedIndexInformer
	broadcast record.EventBroadcaster
	queue     workqueue.TypedRateLimitingInterface[string]
	// started: the caches have synced and the workers run (Ready).
	started atomic.Bool
	// ready latches Ready's first nil: the replica has been warm once.
	ready atomic.Bool

	// relay moves every node's S3 transfers, its buffer pool bounding
	// their memory together.
	relay *s3relay.Relay
	// serviceRelay and forwarders serve every node's pods that reach
	// cluster Services (SetClusterServices); nil: such pods wait.
	serviceRelay *svcrelay.Relay
	forwarders   *provider.Forwarders
	// egress is where rbn-kubelet may connect for pods (S3, relayed images).
	egress *egress.Policy
	hosts  *provider.HostPool // the nodes' hosts: one SSH connection and poller each
	// identities keeps the nodes' client certificates (config
	// nodeIdentities); nil: the nodes act with rbn-kubelet's account.
	identities *nodeidentity.Issuer
	// serving keeps the nodes' serving certificates (config nodeServices).
	serving ServingCertificates
	restCfg *rest.Config // rbn-kubelet's own
	// blocks hands each node its block of rbn's pod network; nil: pods
	// join their hosts' default networks.
	blocks *podnet.Blocks
	// warm keeps every valid node's host up, served here or not; nil in
	// tests that start no host.
	warm   *warmHosts
	events typedcorev1.EventsGetter

	// restarts spaces the starts of a node whose runtime failed or could
	// not start (transiently), per RemoteBuildNode.
	restarts workqueue.TypedRateLimiter[string]
	clock    func() time.Time // nil: time.Now

	// owner says which nodes this replica serves (see Ownership).
	owner Ownership
	// start starts a node's runtime; nil: startRuntime.
	start func(ctx context.Context, d runtimeDeps, name, hash string, spec *rbnv1.RemoteBuildNodeSpec, key, knownHosts []byte, onChange func()) (*nodeRuntime, error)

	mu       sync.Mutex
	runtimes map[string]*nodeRuntime
	retry    map[string]retryState // nodes waiting for their back-off to start again
	// unvisited: the RemoteBuildNodes listed when the caches synced that
	// no worker has reconciled yet (Ready).
	unvisited map[string]bool
	ports     NodePorts
}

// retryState: a node's runtime starts again at at, unless its spec or
// Secret (hash) changes first.
type retryState struct {
	hash string
	at   time.Time
}

// Back-off of restarts after failures; a runtime that served this long
// before failing starts its back-off afresh.
const (
	restartBackoffBase = time.Second
	restartBackoffMax  = 5 * time.Minute
	stableRuntime      = 10 * time.Minute
)

// New wires a Controller; Run starts it.
// events records the nodes' and pods' events (a client with a budget of its own);
// owner says which nodes this replica serves.
func New(cfg *config.KubeletConfiguration, restCfg *rest.Config, client kubernetes.Interface, events typedcorev1.EventsGetter, owner Ownership, namespace string) (*Controller, error) {
	if owner == nil {
		return nil, errors.New("controller: no node ownership")
	}
	rc, err := newRBNClient(restCfg)
	if err != nil {
		return nil, err
	}
	// Events on RemoteBuildNodes need the kind in the recorder's scheme.
	if err := rbnv1.AddToScheme(scheme.Scheme); err != nil {
		return nil, err
	}
	policy, err := cfg.Egress.Policy()
	if err != nil {
		return nil, err
	}
	relay, err := s3relay.New(s3relay.Config{Egress: policy})
	if err != nil {
		return nil, err
	}
	var identities *nodeidentity.Issuer
	if cfg.NodeIdentities != nil && *cfg.NodeIdentities { // defaulted to true when loaded
		identities = nodeidentity.NewIssuer(nodeidentity.IssuerConfig{Base: restCfg, Requester: client})
	}
	var serving ServingCertificates
	switch {
	case cfg.NodeServices && identities != nil:
		serving = identities
	case cfg.NodeServices:
		serving = nodeidentity.NewIssuer(nodeidentity.IssuerConfig{Base: restCfg, Requester: client})
	}
	c := &Controller{
		identities: identities,
		serving:    serving,
		restCfg:    restCfg,
		relay:      relay,
		egress:     policy,
		cfg:        cfg,
		client:     client,
		rbn:        rc,
		shared:     informers.NewSharedInformerFactory(client, 10*time.Minute),
		own:        informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute, informers.WithNamespace(namespace)),
		namespace:  namespace,
		broadcast:  record.NewBroadcaster(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "remotebuildnodes"}),
		runtimes: map[string]*nodeRuntime{},
		retry:    map[string]retryState{},
		restarts: workqueue.NewTypedItemExponentialFailureRateLimiter[string](restartBackoffBase, restartBackoffMax),
		hosts:    provider.NewHostPool(sshconn.NewPool()),
		events:   events,
		owner:    owner,
	}
	c.warm = newWarmHosts(c.hosts)
	c.rbnInformer = cache.NewSharedIndexInformer(rc.listWatch(), &rbnv1.RemoteBuildNode{}, 10*time.Minute, cache.Indexers{
		secretIndex: func(obj any) ([]string, error) {
			r := obj.(*rbnv1.RemoteBuildNode)
			return []string{r.Spec.SSHSecretRef.Namespace + "/" + r.Spec.SSHSecretRef.Name}, nil
		},
	})
	enqueue := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(k)
		}
	}
	if _, err := c.rbnInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, o any) { enqueue(o) }, DeleteFunc: enqueue,
	}); err != nil {
		return nil, err
	}
	secretChanged := func(obj any) {
		k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err != nil {
			return
		}
		users, _ := c.rbnInformer.GetIndexer().ByIndex(secretIndex, k)
		for _, u := range users {
			enqueue(u)
		}
	}
	if _, err := c.own.Core().V1().Secrets().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: secretChanged, UpdateFunc: func(_, o any) { secretChanged(o) }, DeleteFunc: secretChanged,
	}); err != nil {
		return nil, err
	}
	if c.podIndex, err = newPodIndex(client); err != nil {
		return nil, err
	}
	// Pods need Services, RuntimeClasses and their claims and volumes too,
	// and Secrets and ConfigMaps when the nodes have no identity of their
	// own to read them with (podObjectsFor); register them before Start.
	if identities == nil {
		c.shared.Core().V1().Secrets().Informer()
		c.shared.Core().V1().ConfigMaps().Informer()
	}
	c.shared.Core().V1().Services().Informer()
	c.shared.Node().V1().RuntimeClasses().Informer()
	c.shared.Core().V1().PersistentVolumeClaims().Informer()
	c.shared.Core().V1().PersistentVolumes().Informer()
	return c, nil
}

// SetClusterServices relays the connections of pods to the cluster Services
// their annotation rbn.dev/cluster-services names (docs/services.md), with
// the forwarder programs of fw; call it before Run.
func (c *Controller) SetClusterServices(relay *svcrelay.Relay, fw *provider.Forwarders) {
	c.serviceRelay, c.forwarders = relay, fw
}

// ServiceLister reads the cluster's Services from the controller's cache,
// which Run starts.
func (c *Controller) ServiceLister() corev1listers.ServiceLister {
	return c.shared.Core().V1().Services().Lister()
}

// SetPodNetwork makes each node's pods join its block of rbn's pod
// network, handed out by blocks; call it before Run.
func (c *Controller) SetPodNetwork(blocks *podnet.Blocks) { c.blocks = blocks }

// Run serves until ctx ends, then stops every node runtime and releases
// every node's Lease (see shutdown).
func (c *Controller) Run(ctx context.Context, workers int) error {
	log := logging.FromContext(ctx)
	c.broadcast.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.events.Events("")})
	defer c.broadcast.Shutdown()
	defer c.queue.ShutDown()

	c.shared.Start(ctx.Done())
	c.own.Start(ctx.Done())
	go c.rbnInformer.Run(ctx.Done())
	go c.podIndex.Run(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), c.rbnInformer.HasSynced) {
		return errors.New("remotebuildnodes informer did not sync (is the CRD installed?)")
	}
	if !cache.WaitForCacheSync(ctx.Done(), c.podIndex.HasSynced) {
		return errors.New("pod index did not sync")
	}
	for _, f := range []informers.SharedInformerFactory{c.shared, c.own} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("informer for %v did not sync", typ)
			}
		}
	}
	c.mu.Lock()
	c.unvisited = map[string]bool{}
	for _, k := range c.rbnInformer.GetIndexer().ListKeys() {
		c.unvisited[k] = true
	}
	c.mu.Unlock()
	c.started.Store(true)
	log.Info("controller started", "workers", workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait.UntilWithContext(ctx, c.worker, time.Second)
		}()
	}
	<-ctx.Done()
	c.queue.ShutDown()
	wg.Wait()
	return c.shutdown(ctx)
}

// SSHConnections is the pool of the build hosts' SSH connections, the
// standby replicas' warm ones included (for their metrics).
func (c *Controller) SSHConnections() *sshconn.Pool { return c.hosts.SSH() }

// BuildHosts are the running build hosts, the standby replicas' warm ones
// included, each with its podman client (for their metrics).
func (c *Controller) BuildHosts() []*provider.Host { return c.hosts.Hosts() }

// Relay carries every node's S3 transfers (for their metrics).
func (c *Controller) Relay() *s3relay.Relay { return c.relay }

// Ready says whether the replica can take nodes over without a cold start
// (its readiness, which a rollout waits for before it stops an old
// replica): nil once its caches have synced, its workers have reconciled
// every RemoteBuildNode there was then, and the first connection attempt to
// each of their hosts has ended, Ready or failed. A replica still
// connecting would take a released node and leave its Node Lease
// unrenewed until the host answers. Once nil, it stays nil: a node added
// later does not take the replica out of service.
func (c *Controller) Ready() error {
	if c.ready.Load() {
		return nil
	}
	if !c.started.Load() {
		return errors.New("waiting for the RemoteBuildNode, pod, Secret and ConfigMap caches to sync")
	}
	c.mu.Lock()
	unvisited := len(c.unvisited)
	c.mu.Unlock()
	if unvisited > 0 {
		return fmt.Errorf("%d RemoteBuildNodes not reconciled yet", unvisited)
	}
	if c.warm != nil {
		if nodes := c.warm.connecting(); len(nodes) > 0 {
			return fmt.Errorf("connecting to the build hosts of %s", strings.Join(nodes, ", "))
		}
	}
	c.ready.Store(true)
	return nil
}

// coolHost releases a node's warm host.
func (c *Controller) coolHost(name string) {
	if c.warm != nil {
		c.warm.drop(name)
	}
}

func (c *Controller) worker(ctx context.Context) {
	for {
		key, quit := c.queue.Get()
		if quit {
			return
		}
		err := c.reconcile(logging.With(ctx, "remoteBuildNode", key), key)
		switch {
		case err == nil:
			c.queue.Forget(key)
		default:
			logging.FromContext(ctx).Error("reconcile failed, retrying", "remoteBuildNode", key, "err", err)
			c.queue.AddRateLimited(key)
		}
		c.queue.Done(key)
	}
}

func (c *Controller) recorderFor(node string) record.EventRecorder {
	return c.broadcast.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "rbn-kubelet", Host: node})
}

func (c *Controller) reconcile(ctx context.Context, name string) error {
	defer func() {
		c.mu.Lock()
		delete(c.unvisited, name)
		c.mu.Unlock()
	}()
	obj, exists, err := c.rbnInformer.GetIndexer().GetByKey(name)
	if err != nil {
		return err
	}
	if !exists {
		c.stopRuntime(name)
		c.coolHost(name)
		return c.release(ctx, name)
	}
	rbn := obj.(*rbnv1.RemoteBuildNode).DeepCopy()
	// Only the replica holding the node's Lease serves it, finalizes it or
	// writes its status; the Elector requeues the node when that changes.
	// Every replica keeps the host of a valid node warm (see warmHosts).
	if err := c.owner.Contend(name); err != nil {
		return fmt.Errorf("contend for node %s: %w", name, err)
	}
	lost := c.owner.Lost(name)
	serving := held(lost)
	if !serving {
		c.stopRuntime(name)
	}
	if rbn.DeletionTimestamp != nil {
		c.coolHost(name)
		if !serving {
			return nil
		}
		return c.finalize(ctx, rbn)
	}
	if serving && !slices.Contains(rbn.Finalizers, rbnv1.Finalizer) {
		// Requeued by the update event this causes.
		return c.rbn.setFinalizers(ctx, rbn, append(rbn.Finalizers, rbnv1.Finalizer))
	}

	spec := rbnv1.Default(&rbn.Spec)
	if errs := rbnv1.Validate(rbn.Name, spec); len(errs) > 0 {
		c.stopRuntime(name)
		c.coolHost(name)
		if !serving {
			return nil
		}
		return c.setInvalid(ctx, rbn, ReasonInvalidSpec, errs.ToAggregate().Error())
	}
	key, knownHosts, reason, msg := c.sshMaterial(spec)
	if reason != "" {
		c.stopRuntime(name)
		c.coolHost(name)
		if !serving {
			return nil
		}
		return c.setInvalid(ctx, rbn, reason, msg)
	}
	hash := configHash(spec, key, knownHosts)
	if c.warm != nil {
		if err := c.warm.keep(name, hash, hostConfig(ctx, c.cfg, spec, key, knownHosts)); err != nil {
			// The SSH material is unusable: the serving replica's
			// startRuntime reports it on the RemoteBuildNode.
			logging.FromContext(ctx).Info("host not kept warm", "err", err)
		}
	}
	if !serving {
		return nil
	}

	c.mu.Lock()
	rt := c.runtimes[name]
	c.mu.Unlock()
	if rt != nil && rt.hash != hash {
		logging.FromContext(ctx).Info("spec or secret changed: restarting node runtime")
		c.stopRuntime(name)
		rt = nil
	}
	if rt != nil {
		select {
		case <-rt.Done():
			// It ended by itself (a part failed): report it, and start it
			// again after a back-off.
			c.dropRuntime(name, rt)
			err := rt.Err()
			if err == nil {
				err = errors.New("node runtime ended")
			}
			return c.retryLater(ctx, rbn, hash, ReasonRuntimeFailed, err, c.now().Sub(rt.started) >= stableRuntime)
		default:
		}
	}
	if rt == nil {
		if c.waitingRetry(name, hash) {
			return nil // queued again for the end of the back-off
		}
		foreign, err := c.foreignNode(ctx, name)
		if err != nil {
			return err
		}
		if foreign {
			c.coolHost(name)
			c.queue.AddAfter(name, foreignNodeRecheck)
			return c.setInvalid(ctx, rbn, ReasonNodeNameTaken, fmt.Sprintf(
				"a Node named %s exists and is not a remote build node (no label %s=true): rbn does not take it over (its taints, labels and pods); rename the RemoteBuildNode, or delete that Node",
				name, rbnv1.LabelRemoteBuildNode))
		}
		c.mu.Lock()
		ports := c.ports
		c.mu.Unlock()
		start := c.start
		if start == nil {
			start = startRuntime
		}
		rt, err = start(ctx, runtimeDeps{client: c.client, restCfg: c.restCfg, identities: c.identities, serving: c.serving, namespace: c.namespace, owner: rbn.UID, shared: c.shared, relay: c.relay, serviceRelay: c.serviceRelay, forwarders: c.forwarders, egress: c.egress, recorder: c.recorderFor, cfg: c.cfg, ports: ports, hosts: c.hosts, blocks: c.blocks, clock: c.clock},
			name, hash, spec, key, knownHosts, func() { c.queue.Add(name) })
		if err != nil {
			reason, transient := classifyStart(err)
			if !transient {
				return c.setInvalid(ctx, rbn, reason, err.Error())
			}
			return c.retryLater(ctx, rbn, hash, reason, err, false)
		}
		c.mu.Lock()
		c.runtimes[name] = rt
		delete(c.retry, name)
		c.mu.Unlock()
		go c.watchLost(ctx, name, rt, lost)
	}
	return c.writeStatus(ctx, rbn, rt)
}

func (c *Controller) sshMaterial(spec *rbnv1.RemoteBuildNodeSpec) (key, knownHosts []byte, reason, msg string) {
	ref := spec.SSHSecretRef
	if ref.Namespace != c.namespace {
		return nil, nil, ReasonSecretNamespace, fmt.Sprintf("Secret %s/%s: rbn-kubelet reads SSH Secrets in its own namespace %s only; move the Secret there", ref.Namespace, ref.Name, c.namespace)
	}
	s, err := c.own.Core().V1().Secrets().Lister().Secrets(ref.Namespace).Get(ref.Name)
	if apierrors.IsNotFound(err) {
		return nil, nil, ReasonSecretNotFound, fmt.Sprintf("Secret %s/%s not found", ref.Namespace, ref.Name)
	}
	if err != nil {
		return nil, nil, ReasonSecretNotFound, err.Error()
	}
	var missing []string
	for _, k := range []string{rbnv1.SecretKeyPrivateKey, rbnv1.SecretKeyKnownHosts} {
		if len(s.Data[k]) == 0 {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return nil, nil, ReasonSecretInvalid, fmt.Sprintf("Secret %s/%s lacks key(s) %v", ref.Namespace, ref.Name, missing)
	}
	return s.Data[rbnv1.SecretKeyPrivateKey], s.Data[rbnv1.SecretKeyKnownHosts], "", ""
}

func configHash(spec *rbnv1.RemoteBuildNodeSpec, key, knownHosts []byte) string {
	b, _ := json.Marshal(spec)
	h := sha256.New()
	h.Write(b)
	h.Write([]byte{0})
	h.Write(key)
	h.Write([]byte{0})
	h.Write(knownHosts)
	return hex.EncodeToString(h.Sum(nil))
}

// stopRuntime stops a node's runtime, if any, and forgets its failures:
// its spec changed, became invalid, or it is deleted.
func (c *Controller) stopRuntime(name string) {
	c.mu.Lock()
	rt := c.runtimes[name]
	delete(c.runtimes, name)
	delete(c.retry, name)
	c.mu.Unlock()
	if c.restarts != nil { // nil in tests that need no back-off
		c.restarts.Forget(name)
	}
	if rt != nil {
		rt.stop()
	}
}

// dropRuntime forgets a runtime that ended by itself.
func (c *Controller) dropRuntime(name string, rt *nodeRuntime) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.runtimes[name] == rt {
		delete(c.runtimes, name)
	}
}

func (c *Controller) now() time.Time {
	if c.clock == nil {
		return time.Now()
	}
	return c.clock()
}

// retryLater reports a runtime that failed or could not start (a transient
// failure) and has the node started again after its back-off; reset starts
// the back-off afresh.
func (c *Controller) retryLater(ctx context.Context, rbn *rbnv1.RemoteBuildNode, hash, reason string, err error, reset bool) error {
	if reset {
		c.restarts.Forget(rbn.Name)
	}
	delay := c.restarts.When(rbn.Name)
	c.mu.Lock()
	c.retry[rbn.Name] = retryState{hash: hash, at: c.now().Add(delay)}
	c.mu.Unlock()
	c.queue.AddAfter(rbn.Name, delay)
	logging.FromContext(ctx).Error("node runtime failed, starting it again after a back-off", "reason", reason, "err", err, "retryIn", delay)
	return c.setFailed(ctx, rbn, reason, err.Error())
}

// waitingRetry says whether the node waits for the end of its back-off
// before its runtime starts again; a changed spec or Secret does not wait.
func (c *Controller) waitingRetry(name, hash string) bool {
	c.mu.Lock()
	r, ok := c.retry[name]
	if ok && r.hash != hash {
		delete(c.retry, name)
	}
	c.mu.Unlock()
	switch {
	case !ok:
		return false
	case r.hash != hash:
		c.restarts.Forget(name)
		return false
	}
	return c.now().Before(r.at)
}

func (c *Controller) setInvalid(ctx context.Context, rbn *rbnv1.RemoteBuildNode, reason, msg string) error {
	return c.setProblem(ctx, rbn, rbnv1.PhaseInvalid, reason, msg, false)
}

// setFailed records a failure of the node's runtime, to be retried: the
// node is NotReady, and each failure is a Warning event.
func (c *Controller) setFailed(ctx context.Context, rbn *rbnv1.RemoteBuildNode, reason, msg string) error {
	return c.setProblem(ctx, rbn, rbnv1.PhaseNotReady, reason, msg, true)
}

// setProblem writes phase with reason and msg as lastError and the Ready
// condition's, and a Warning event: when the status changes, or always.
func (c *Controller) setProblem(ctx context.Context, rbn *rbnv1.RemoteBuildNode, phase rbnv1.Phase, reason, msg string, alwaysEvent bool) error {
	prev := rbn.Status.DeepCopy()
	rbn.Status.Phase = phase
	rbn.Status.ObservedGeneration = rbn.Generation
	c.setError(rbn, reason, msg)
	meta.SetStatusCondition(&rbn.Status.Conditions, metav1.Condition{
		Type: "Ready", Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: rbn.Generation,
	})
	changed := !statusEqual(prev, &rbn.Status)
	if changed || alwaysEvent {
		c.recorderFor("").Event(rbn, corev1.EventTypeWarning, reason, msg)
	}
	if !changed {
		return nil
	}
	return c.rbn.updateStatus(ctx, rbn)
}

// setError records err as lastError unless it is the one already recorded.
func (c *Controller) setError(rbn *rbnv1.RemoteBuildNode, reason, msg string) {
	if le := rbn.Status.LastError; le != nil && le.Reason == reason && le.Message == msg {
		return
	}
	rbn.Status.LastError = &rbnv1.HostError{Reason: reason, Message: msg, Time: metav1.Now()}
}

func (c *Controller) writeStatus(ctx context.Context, rbn *rbnv1.RemoteBuildNode, rt *nodeRuntime) error {
	prev := rbn.Status.DeepCopy()
	info, health := rt.host.Snapshot()
	st := &rbn.Status
	st.ObservedGeneration = rbn.Generation
	st.NodeName = rbn.Name
	if info != nil {
		st.Host = &rbnv1.HostInfo{
			Architecture: info.Arch, OS: info.OS, OSImage: info.Distribution,
			KernelVersion: info.Kernel, PodmanVersion: info.PodmanVersion, Hostname: info.Hostname,
		}
	}
	cond := metav1.Condition{Type: "Ready", ObservedGeneration: rbn.Generation}
	switch {
	case health.Ready:
		st.Phase = rbnv1.PhaseReady
		cond.Status, cond.Reason, cond.Message = metav1.ConditionTrue, "HostReady", "ssh and podman answer"
	case health.Reason == provider.ReasonConnecting:
		st.Phase = rbnv1.PhasePending
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, health.Reason, health.Message
	default:
		st.Phase = rbnv1.PhaseNotReady
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, health.Reason, health.Message
		c.setError(rbn, health.Reason, health.Message)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	if statusEqual(prev, st) {
		return nil
	}
	if prev.Phase != st.Phase {
		typ := corev1.EventTypeNormal
		if st.Phase == rbnv1.PhaseNotReady {
			typ = corev1.EventTypeWarning
		}
		c.recorderFor(rbn.Name).Event(rbn, typ, cond.Reason, fmt.Sprintf("%s: %s", st.Phase, cond.Message))
	}
	err := c.rbn.updateStatus(ctx, rbn)
	if apierrors.IsConflict(err) {
		c.queue.Add(rbn.Name) // a newer object is on its way through the informer
		return nil
	}
	return err
}

func statusEqual(a, b *rbnv1.RemoteBuildNodeStatus) bool {
	// LastTransitionTime differs only when something else does.
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// finalize stops serving the host, deletes the pods bound to its node (they
// cannot run anywhere once the node is gone; their controllers recreate them
// elsewhere), the Node and its Lease, then releases the RemoteBuildNode.
func (c *Controller) finalize(ctx context.Context, rbn *rbnv1.RemoteBuildNode) error {
	log := logging.FromContext(ctx)
	c.stopRuntime(rbn.Name)
	if !slices.Contains(rbn.Finalizers, rbnv1.Finalizer) {
		return nil
	}
	removeFinalizer := func() error {
		return c.rbn.setFinalizers(ctx, rbn, slices.DeleteFunc(slices.Clone(rbn.Finalizers), func(f string) bool { return f == rbnv1.Finalizer }))
	}
	foreign, err := c.foreignNode(ctx, rbn.Name)
	if err != nil {
		return err
	}
	if foreign {
		// Refused with NodeNameTaken: its Node, pods and Lease are another's.
		log.Info("the Node of this name is not a remote build node: left alone")
		return removeFinalizer()
	}
	pods, err := c.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", rbn.Name).String(),
	})
	if err != nil {
		return fmt.Errorf("list pods of node %s: %w", rbn.Name, err)
	}
	c.sweepHost(ctx, rbn)
	if c.blocks != nil {
		// After the sweep: a host that could not be swept may keep the
		// network (HostNotSwept says so); the block is free again anyway,
		// since a host gone for good must not hold it forever.
		if err := c.blocks.Release(ctx, rbn.Name); err != nil {
			return err
		}
	}
	if err := c.deletePods(ctx, rbn.Name, pods.Items); err != nil {
		return err
	}
	if err := c.client.CoreV1().Nodes().Delete(ctx, rbn.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete node %s: %w", rbn.Name, err)
	}
	err = c.client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, rbn.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete lease %s: %w", rbn.Name, err)
	}
	if c.cfg.NodeServices {
		if err := nodeservice.Delete(ctx, c.client, c.namespace, rbn.Name); err != nil {
			return err
		}
	}
	log.Info("node removed")
	return removeFinalizer()
}

// deletePods deletes the pods of a removed node, as the node (with node
// identities: NodeRestriction lets a node delete only its own pods), or
// with rbn-kubelet's account. A node whose identity cannot be had leaves
// its pods to the kube-controller-manager's pod garbage collector, which
// deletes the pods of a Node that is gone.
func (c *Controller) deletePods(ctx context.Context, node string, pods []corev1.Pod) error {
	if len(pods) == 0 {
		return nil
	}
	log := logging.FromContext(ctx)
	client, release, err := nodeClientFor(ctx, runtimeDeps{client: c.client, identities: c.identities, cfg: c.cfg}, node)
	if err != nil {
		log.Warn("no identity of the removed node to delete its pods with: the pod garbage collector deletes them once its Node is gone", "pods", len(pods), "err", err)
		return nil
	}
	defer release()
	for _, p := range pods {
		err := client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		log.Info("deleted pod of removed node", "pod", p.Namespace+"/"+p.Name)
	}
	return nil
}

// sweepSettle bounds the wait for a deleted node's host to answer before
// its leftovers are removed.
const sweepSettle = 30 * time.Second

// sweepHost removes what rbn made on a deleted RemoteBuildNode's host for
// it (its pods' podman pods, containers and volumes), once its runtime has
// stopped: nothing else would, since a node's orphan sweep runs only while
// it is served. Best effort: a host that cannot be reached, or objects
// that cannot be removed, do not hold the deletion up (a host gone for
// good must not keep its RemoteBuildNode forever); a Warning event
// (HostNotSwept) says what was left and why.
func (c *Controller) sweepHost(ctx context.Context, rbn *rbnv1.RemoteBuildNode) {
	if c.hosts == nil {
		return // unit tests without hosts
	}
	log := logging.FromContext(ctx)
	warn := func(msg string) {
		log.Warn("host not swept", "msg", msg)
		c.recorderFor(rbn.Name).Event(rbn, corev1.EventTypeWarning, "HostNotSwept",
			"containers and volumes of this node may be left on its host: "+msg)
	}
	spec := rbnv1.Default(&rbn.Spec)
	key, knownHosts, reason, msg := c.sshMaterial(spec)
	if reason != "" {
		warn(msg)
		return
	}
	host, release, err := c.hosts.Acquire(hostConfig(ctx, c.cfg, spec, key, knownHosts))
	if err != nil {
		warn(err.Error())
		return
	}
	defer release()
	wctx, cancel := context.WithTimeout(ctx, sweepSettle)
	defer cancel()
	if !hostSettled(wctx, host, sweepSettle) {
		warn("the host did not answer within " + sweepSettle.String())
		return
	}
	if _, h := host.Snapshot(); !h.Ready {
		warn(fmt.Sprintf("the host is not ready (%s: %s)", h.Reason, h.Message))
		return
	}
	if err := provider.SweepNode(wctx, host, rbn.Name, log); err != nil {
		warn(err.Error())
		return
	}
	log.Info("removed the node's leftovers from its host")
}

// foreignNode says whether a Node named name exists that is not a remote
// build node: rbn never takes such a Node over (it would rewrite its taints
// and labels, serve its pods, and delete them with the RemoteBuildNode).
func (c *Controller) foreignNode(ctx context.Context, name string) (bool, error) {
	n, err := c.client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get node %s: %w", name, err)
	}
	return n.Labels[rbnv1.LabelRemoteBuildNode] != "true", nil
}
