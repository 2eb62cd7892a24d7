package controller

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	vknode "github.com/virtual-kubelet/virtual-kubelet/node"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/config"
	"github.com/remote-build-nodes/rbn/internal/egress"
	"github.com/remote-build-nodes/rbn/internal/kubeletapi"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/nodeidentity"
	"github.com/remote-build-nodes/rbn/internal/podnet"
	"github.com/remote-build-nodes/rbn/internal/podobjects"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
	"github.com/remote-build-nodes/rbn/internal/svcrelay"
	"github.com/remote-build-nodes/rbn/provider"
	"github.com/remote-build-nodes/rbn/provider/node"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// nodeRuntime is everything that serves one RemoteBuildNode while its spec
// stays the same: host connection, node and pod controllers, pod informer.
// It owns its parts (see group): when one fails, the runtime ends, Done is
// closed and Err says why; the controller then starts a new one.
type nodeRuntime struct {
	name    string
	hash    string
	host    *provider.Host
	spec    *rbnv1.RemoteBuildNodeSpec // defaulted
	volumes *provider.HostVolumes
	imageGC *provider.ImageGC
	// diskPressure is the node's eviction manager for its host's disk.
	diskPressure *provider.DiskPressure
	pods         *provider.Pods
	api          *kubeletapi.NodeHandlers
	started      time.Time
	parts        *group
}

type runtimeDeps struct {
	client   kubernetes.Interface
	shared   informers.SharedInformerFactory
	recorder func(node string) record.EventRecorder
	cfg      *config.KubeletConfiguration
	ports    NodePorts // nil: every node on cfg.KubeletPort
	relay    *s3relay.Relay
	// serviceRelay and forwarders: see Controller.SetClusterServices.
	serviceRelay *svcrelay.Relay
	forwarders   *provider.Forwarders
	egress       *egress.Policy
	hosts        *provider.HostPool
	// restCfg is rbn-kubelet's own: where the apiserver is.
	restCfg *rest.Config
	blocks  *podnet.Blocks // nil: no pod network
	// identities gives each node its client certificate; nil: the
	// nodes act with rbn-kubelet's own account.
	identities *nodeidentity.Issuer
	// serving keeps the nodes' serving certificates (config nodeServices).
	serving ServingCertificates
	// namespace is rbn-kubelet's own, where the nodes' Services are.
	namespace string
	// owner is the RemoteBuildNode's UID.
	owner types.UID
	clock func() time.Time // nil: time.Now
	// addressProbe checks a node's address before it is advertised
	// (config nodeServices); nil: defaultAddressProbe.
	addressProbe *addressProbe
}

// startRuntime starts serving a RemoteBuildNode. Its errors are
// *StartError: spec problems, or transient ones worth retrying. onChange is
// called when the host changes and when the runtime ends by failing.
func startRuntime(parent context.Context, d runtimeDeps, name, hash string, spec *rbnv1.RemoteBuildNodeSpec, key, knownHosts []byte, onChange func()) (_ *nodeRuntime, err error) {
	log := logging.FromContext(parent).With("node", name)
	// One connection and one host poller per host, whatever the number of
	// RemoteBuildNodes naming it; each node keeps its own pods and status.
	host, releaseHost, err := d.hosts.Acquire(hostConfig(parent, d.cfg, spec, key, knownHosts))
	if err != nil {
		// Acquire does not dial: what fails is the SSH material.
		return nil, specError(ReasonSecretInvalid, fmt.Errorf("SSH configuration: %w", err))
	}
	defer func() {
		if err != nil {
			releaseHost()
		}
	}()
	// As the node (config nodeIdentities), or as rbn-kubelet: the pods'
	// statuses and deletions, their tokens.
	nodeClient, releaseIdentity, err := nodeClientFor(parent, d, name)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			releaseIdentity()
		}
	}()
	token := tokenFunc(nodeClient)
	transferSecret, err := secretAsPod(d.restCfg, token)
	if err != nil {
		return nil, transientError(ReasonStartFailed, err)
	}
	objects, stopObjects := podObjectsFor(parent, d, nodeClient)
	defer func() {
		if err != nil {
			stopObjects()
		}
	}()
	var block netip.Prefix
	if d.blocks != nil {
		if block, err = d.blocks.Block(parent, name); err != nil {
			return nil, transientError(ReasonPodNetworkUnavailable, err)
		}
	}
	recorder := d.recorder(name)
	podFactory := informers.NewSharedInformerFactoryWithOptions(d.client, 10*time.Minute,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", name).String()
		}))
	podInformer := podFactory.Core().V1().Pods().Informer()
	if err := podInformer.AddIndexers(cache.Indexers{uidIndex: func(obj any) ([]string, error) {
		return []string{string(obj.(*corev1.Pod).UID)}, nil
	}}); err != nil {
		return nil, transientError(ReasonStartFailed, fmt.Errorf("pod informer index: %w", err))
	}
	pods, err := provider.NewPods(provider.PodsConfig{
		NodeName: name, Spec: spec, Host: host, Recorder: recorder, Logger: log,
		ClusterDomain:  d.cfg.ClusterDomain,
		Objects:        objects,
		TransferSecret: transferSecret,
		RuntimeClasses: d.shared.Node().V1().RuntimeClasses().Lister(),
		Claims:         d.shared.Core().V1().PersistentVolumeClaims().Lister(),
		Services:       d.shared.Core().V1().Services().Lister(),
		Volumes:        d.shared.Core().V1().PersistentVolumes().Lister(),
		Token:          token,
		Relay:          d.relay,
		ServiceRelay:   d.serviceRelay,
		Forwarders:     d.forwarders,
		Egress:         d.egress,
		Retry:          podRetry(d.cfg.PodRetry),
		PodNetwork:     block,
		ResyncInterval: d.cfg.PodRetry.Resync.Duration,
		Known: func(uid types.UID) (bool, bool) {
			if !podInformer.HasSynced() {
				return false, false
			}
			objs, err := podInformer.GetIndexer().ByIndex(uidIndex, string(uid))
			return err == nil && len(objs) > 0, err == nil
		},
		Bound: func(namespace, name string) bool {
			if !podInformer.HasSynced() {
				return true // not known yet: may be
			}
			_, ok, err := podInformer.GetStore().GetByKey(namespace + "/" + name)
			return ok || err != nil
		},
		Ended: func() []*corev1.Pod {
			if !podInformer.HasSynced() {
				return nil
			}
			var ended []*corev1.Pod
			for _, obj := range podInformer.GetStore().List() {
				if pd := obj.(*corev1.Pod); pd.DeletionTimestamp == nil &&
					pod.Ended(pd.Status.Phase) {
					ended = append(ended, pd)
				}
			}
			return ended
		},
	})
	if err != nil {
		return nil, transientError(ReasonStartFailed, fmt.Errorf("pods: %w", err))
	}
	// virtual-kubelet hands the provider spec changes only: the conditions
	// that other controllers set (readiness gates) come from here.
	if _, err := podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.Pod)
			n, ok2 := newObj.(*corev1.Pod)
			if ok1 && ok2 && !equality.Semantic.DeepEqual(o.Status.Conditions, n.Status.Conditions) {
				pods.PodConditionsChanged(n)
			}
		},
	}); err != nil {
		return nil, transientError(ReasonStartFailed, fmt.Errorf("pod informer handler: %w", err))
	}
	port, releasePort, err := acquirePort(parent, d, name)
	if err != nil {
		return nil, transientError(ReasonKubeletPortUnavailable, fmt.Errorf("kubelet API port: %w", err))
	}
	served := false
	defer func() {
		if !served {
			releasePort()
		}
	}()
	endpoint, releaseEndpoint, err := nodeEndpointFor(parent, d, name, port)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !served {
			releaseEndpoint()
		}
	}()
	pvs := d.shared.Core().V1().PersistentVolumes()
	volumes := provider.NewHostVolumes(provider.HostVolumesConfig{
		Node: name, Root: spec.Volumes.Root, Host: host, Log: log,
		Known: func(pv string) (bool, bool) {
			if !pvs.Informer().HasSynced() {
				return false, false
			}
			_, err := pvs.Lister().Get(pv)
			return err == nil, err == nil || apierrors.IsNotFound(err)
		},
		Event: func(eventType, reason, message string) {
			recorder.Event(&corev1.ObjectReference{APIVersion: rbnv1.SchemeGroupVersion.String(), Kind: "RemoteBuildNode", Name: name},
				eventType, reason, message)
		},
	})
	// On the Node, as the kubelet reports its image collection and its
	// evictions.
	nodeEvent := func(eventType, reason, message string) {
		recorder.Event(&corev1.ObjectReference{Kind: "Node", Name: name, UID: types.UID(name)}, eventType, reason, message)
	}
	imageGC := provider.NewImageGC(provider.ImageGCConfig{
		Policy: spec.ImageGC, Host: host, Log: log,
		Named: func() []string { return podImageRefs(podInformer.GetStore().List()) },
		Event: nodeEvent,
	})
	diskPressure := provider.NewDiskPressure(provider.DiskPressureConfig{
		Spec: spec, Host: host, Pods: pods, ImageGC: imageGC, Log: log,
		Event: nodeEvent,
	})
	np := provider.NewNodeProvider(provider.NodeConfig{
		Name: name, Spec: spec, Host: host, Pods: pods, Volumes: volumes,
		KubeletAddress: endpoint.address, KubeletPort: endpoint.port,
	})
	initial := np.Node()
	nodes := d.client.CoreV1().Nodes()
	// The node controller is made once the host has answered (see
	// hostSettled): its first write is the node's status.
	newNodeController := func() (*vknode.NodeController, error) {
		return vknode.NewNodeController(np, np.Node(), nodes,
			vknode.WithNodeEnableLeaseV1(labelledLeases{d.client.CoordinationV1().Leases(corev1.NamespaceNodeLease)}, d.cfg.NodeLeaseDurationSeconds),
			vknode.WithNodeStatusUpdateInterval(d.cfg.NodeStatusReportFrequency.Duration),
			vknode.WithNodeStatusUpdateErrorHandler(func(ctx context.Context, err error) error {
				if !apierrors.IsNotFound(err) {
					return err
				}
				// Someone deleted the Node while its RemoteBuildNode exists: register it again.
				log.Info("node object missing, recreating it")
				n := np.Node()
				_, err = nodes.Create(ctx, n, metav1.CreateOptions{})
				return err
			}),
		)
	}
	// virtual-kubelet wants informers of ConfigMaps and Secrets to resolve
	// env with, which the provider does itself (SkipDownwardAPIResolution):
	// they come from a factory never started, as the nodes read those as
	// themselves and rbn-kubelet may read neither cluster-wide.
	unused := informers.NewSharedInformerFactory(d.client, 0)
	pc, err := vknode.NewPodController(vknode.PodControllerConfig{
		PodClient:         pods.StatusClient(nodeClient.CoreV1()),
		PodInformer:       podFactory.Core().V1().Pods(),
		EventRecorder:     recorder,
		Provider:          pods,
		ConfigMapInformer: unused.Core().V1().ConfigMaps(),
		SecretInformer:    unused.Core().V1().Secrets(),
		ServiceInformer:   d.shared.Core().V1().Services(),
		// Env is resolved by the provider once the pod's sandbox (and IP)
		// exists, as kubelet does; virtual-kubelet cannot resolve status.podIP.
		SkipDownwardAPIResolution: true,
	})
	if err != nil {
		return nil, transientError(ReasonStartFailed, fmt.Errorf("pod controller: %w", err))
	}

	ctx := logging.IntoContext(parent, log)
	if err := syncNodeSpec(ctx, d.client, initial); err != nil {
		return nil, transientError(ReasonAPIServerUnavailable, err)
	}
	// A part that returns before its context ends has failed, even with
	// nil (see group).
	parts := []part{
		{"node provider", np.Run},
		{"pods", pods.Run},
		{"host volumes", volumes.Run},
		{"image garbage collection", imageGC.Run},
		{"disk pressure eviction", diskPressure.Run},
		{"node controller", func(ctx context.Context) error {
			if !hostSettled(ctx, host, d.cfg.SSH.DialTimeout.Duration) {
				return nil // stopped
			}
			nc, err := newNodeController()
			if err != nil {
				return fmt.Errorf("node controller: %w", err)
			}
			return nc.Run(ctx)
		}},
		{"pod controller", func(ctx context.Context) error {
			podFactory.Start(ctx.Done())
			defer podFactory.Shutdown()
			// DeletePod holds a worker for up to the pod's grace period.
			return pc.Run(ctx, podSyncWorkers)
		}},
		{"host watch", func(ctx context.Context) error {
			// Tell the controller when the host changes, so status follows.
			for {
				ch := host.Changed()
				select {
				case <-ctx.Done():
					return nil
				case <-ch:
					onChange()
				}
			}
		}},
	}
	if d.cfg.NodeServices {
		parts = append(parts, part{"node Service", func(ctx context.Context) error {
			return watchNodeService(ctx, d.shared.Core().V1().Services().Informer(), d.namespace, name, endpoint.address)
		}})
	}
	rt := &nodeRuntime{name: name, hash: hash, host: host, spec: spec, volumes: volumes, imageGC: imageGC, diskPressure: diskPressure, pods: pods, api: nodeHandlers(pods), started: d.now()}
	rt.parts = startGroup(ctx, parts, func(err error) {
		releaseEndpoint()
		releasePort()
		releaseHost()
		stopObjects()
		releaseIdentity()
		if err != nil {
			log.Error("node runtime failed: stopping it", "err", err)
			onChange() // the controller reports it and starts the node again
		}
	})
	served = true
	log.Info("serving node", "address", spec.Address, "port", spec.Port, "kubeletPort", port, "podNetwork", block)
	return rt, nil
}

// podObjectsFor reads the Secrets and ConfigMaps of the node's pods: with
// node identities, one watch per object with the node's client, stopped
// by stop; else from the cluster-wide informers.
func podObjectsFor(ctx context.Context, d runtimeDeps, nodeClient kubernetes.Interface) (_ provider.PodObjects, stop func()) {
	if d.identities == nil {
		return podobjects.Listers{Secrets: d.shared.Core().V1().Secrets().Lister(), ConfigMaps: d.shared.Core().V1().ConfigMaps().Lister()}, func() {}
	}
	ctx, stop = context.WithCancel(ctx)
	return podobjects.New(ctx, nodeClient, podobjects.Options{}), stop
}

// nodeIdentityTimeout bounds the wait for a node's first certificate.
const nodeIdentityTimeout = 30 * time.Second

// nodeClientFor is the client that acts as node: with d.identities, one
// that authenticates with the node's own certificate, once it is issued;
// else rbn-kubelet's own. release gives the identity up.
func nodeClientFor(ctx context.Context, d runtimeDeps, node string) (_ kubernetes.Interface, release func(), err error) {
	if d.identities == nil {
		return d.client, func() {}, nil
	}
	cfg, release, err := d.identities.For(node)
	if err != nil {
		return nil, nil, transientError(ReasonStartFailed, err)
	}
	defer func() {
		if err != nil {
			release()
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, nodeIdentityTimeout)
	defer cancel()
	if err := d.identities.Ready(wctx, node); err != nil {
		return nil, nil, transientError(ReasonNodeIdentityPending, err)
	}
	cfg.QPS, cfg.Burst = d.cfg.KubeAPIQPS, int(d.cfg.KubeAPIBurst)
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, transientError(ReasonStartFailed, err)
	}
	return client, release, nil
}

// hostSettled waits until the host's first connection attempt has ended
// (Ready or a definite failure), at most timeout; false when ctx ended
// first. A node taken over from another replica, or served again after a
// restart, has a Ready Node: writing the status of a host still connecting
// would turn it NotReady (Connecting) for no reason.
func hostSettled(ctx context.Context, host *provider.Host, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		changed := host.Changed()
		if _, h := host.Snapshot(); h.Reason != provider.ReasonConnecting {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		case <-changed:
		}
	}
}

// hostConfig is the shared Host of a node's build host.
func hostConfig(ctx context.Context, cfg *config.KubeletConfiguration, spec *rbnv1.RemoteBuildNodeSpec, key, knownHosts []byte) provider.HostConfig {
	return provider.HostConfig{
		Name: fmt.Sprintf("%s@%s", spec.User, net.JoinHostPort(spec.Address, strconv.Itoa(int(spec.Port)))),
		SSH: sshconn.Config{
			Host: spec.Address, Port: int(spec.Port), User: spec.User,
			PrivateKey: key, KnownHosts: knownHosts,
			DialTimeout:       cfg.SSH.DialTimeout.Duration,
			KeepaliveInterval: cfg.SSH.KeepaliveInterval.Duration,
			KeepaliveTimeout:  cfg.SSH.KeepaliveTimeout.Duration,
			MaxBackoff:        cfg.SSH.MaxBackoff.Duration,
		},
		PodmanSocket:              spec.PodmanSocket,
		HealthCheckInterval:       cfg.HealthCheckInterval.Duration,
		InfoRefreshInterval:       cfg.HostInfoRefreshInterval.Duration,
		PodmanRequestTimeout:      cfg.Podman.RequestTimeout.Duration,
		PodmanImagePullTimeout:    cfg.Podman.ImagePullTimeout.Duration,
		ImagePullProgressDeadline: cfg.Podman.ImagePullProgressDeadline.Duration,
		// The host may serve several nodes: its log names none.
		Logger: logging.FromContext(ctx),
	}
}

func (d runtimeDeps) now() time.Time {
	if d.clock == nil {
		return time.Now()
	}
	return d.clock()
}

const (
	uidIndex       = "uid"
	podSyncWorkers = 10
)

// tokenFunc requests service account tokens bound to the pod, as kubelet does for projected volumes.
func tokenFunc(client kubernetes.Interface) provider.TokenFunc {
	return func(ctx context.Context, pd *corev1.Pod, audiences []string, exp int64) (string, time.Time, error) {
		sa := provider.ServiceAccountOf(pd)
		tr, err := client.CoreV1().ServiceAccounts(pd.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
			Spec: authenticationv1.TokenRequestSpec{
				Audiences:         audiences,
				ExpirationSeconds: &exp,
				BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pd.Name, UID: pd.UID},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return "", time.Time{}, err
		}
		return tr.Status.Token, tr.Status.ExpirationTimestamp.Time, nil
	}
}

// stop ends the runtime and waits for all its parts.
func (rt *nodeRuntime) stop() { rt.parts.Stop() }

// Done is closed when the runtime has ended, stopped or failed, and
// released its port and host.
func (rt *nodeRuntime) Done() <-chan struct{} { return rt.parts.Done() }

// Err is why the runtime ended by itself (a *PartError); nil while it runs
// or when it was stopped.
func (rt *nodeRuntime) Err() error { return rt.parts.Err() }

// syncNodeSpec brings an existing Node's taints and labels in line with the
// spec when its node starts serving: virtual-kubelet creates a missing Node,
// and its status updates carry the provider's labels (a three-way merge that
// also removes a label the spec dropped) but never taints. Taints others put
// on the Node are kept (see node.MergeTaints).
func syncNodeSpec(ctx context.Context, client kubernetes.Interface, want *corev1.Node) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := client.CoreV1().Nodes().Get(ctx, want.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get node %s: %w", want.Name, err)
		}
		upd := cur.DeepCopy()
		upd.Spec.Taints = node.MergeTaints(cur.Spec.Taints, cur.Annotations[rbnv1.AnnotationManagedTaints], want.Spec.Taints)
		if upd.Labels == nil {
			upd.Labels = map[string]string{}
		}
		for k, v := range want.Labels {
			upd.Labels[k] = v
		}
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		upd.Annotations[rbnv1.AnnotationManagedTaints] = node.ManagedTaints(want.Spec.Taints)
		if equalTaints(cur.Spec.Taints, upd.Spec.Taints) && equalLabels(cur.Labels, upd.Labels) &&
			cur.Annotations[rbnv1.AnnotationManagedTaints] == upd.Annotations[rbnv1.AnnotationManagedTaints] {
			return nil
		}
		_, err = client.CoreV1().Nodes().Update(ctx, upd, metav1.UpdateOptions{})
		return err
	})
}

func equalTaints(a, b []corev1.Taint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].MatchTaint(&b[i]) || a[i].Value != b[i].Value {
			return false
		}
	}
	return true
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if bv, ok := b[k]; !ok || bv != v {
			return false
		}
	}
	return true
}

// podRetry takes the pod workers' retry intervals from the configuration.
func podRetry(c config.PodRetryConfiguration) provider.RetryConfig {
	return provider.RetryConfig{
		Sync: c.SyncFailure.Duration, Config: c.ConfigError.Duration, Create: c.CreateFailure.Duration,
		Teardown: c.Teardown.Duration, Events: c.EventsReopen.Duration,
	}
}

// podImageRefs lists the images of the pods (informer objects) that have
// not ended: the image garbage collection keeps them.
func podImageRefs(objs []any) []string {
	var refs []string
	for _, obj := range objs {
		pd, ok := obj.(*corev1.Pod)
		if !ok || pod.Ended(pd.Status.Phase) {
			continue
		}
		for _, c := range slices.Concat(pd.Spec.InitContainers, pd.Spec.Containers) {
			refs = append(refs, c.Image)
		}
		for _, c := range pd.Spec.EphemeralContainers {
			refs = append(refs, c.Image)
		}
	}
	return refs
}
