package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1listers "k8s.io/client-go/listers/core/v1"
	nodev1listers "k8s.io/client-go/listers/node/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/egress"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/internal/svcrelay"
)

// TokenFunc requests a service account token for a pod (TokenRequest API),
// and says when it expires (status.expirationTimestamp; zero: unknown,
// taken as expirationSeconds from now).
type TokenFunc func(ctx context.Context, pd *corev1.Pod, audiences []string, expirationSeconds int64) (token string, expires time.Time, err error)

// PodObjects reads the Secrets and ConfigMaps of a node's pods
// (podobjects.Objects, podobjects.Listers).
type PodObjects interface {
	// Track makes secrets and configMaps (of namespace) the objects pod
	// uid uses; Forget drops the pod.
	Track(uid types.UID, namespace string, secrets, configMaps []string)
	Forget(uid types.UID)
	// Secret and ConfigMap return a tracked object, or a NotFound error.
	Secret(ctx context.Context, namespace, name string) (*corev1.Secret, error)
	ConfigMap(ctx context.Context, namespace, name string) (*corev1.ConfigMap, error)
}

// SecretFunc reads Secret name of the pod's namespace with the pod's own
// service account's credentials; the apiserver's NotFound and Forbidden
// errors come back as they are.
type SecretFunc func(ctx context.Context, pd *corev1.Pod, name string) (*corev1.Secret, error)

// PodsConfig configures Pods.
type PodsConfig struct {
	NodeName string
	// ClusterDomain is the cluster's DNS domain (setHostnameAsFQDN).
	ClusterDomain string
	Spec          *rbnv1.RemoteBuildNodeSpec
	Host          *Host
	Recorder      record.EventRecorder
	Logger        *slog.Logger
	// Objects reads the Secrets and ConfigMaps the pods use (volumes,
	// environment, imagePullSecrets): as the node, where it has an identity.
	Objects PodObjects
	// TransferSecret reads the Secret of a pod's S3 transfers, which an
	// annotation names (the Node authorizer knows nothing of it): as the
	// pod's own service account.
	TransferSecret SecretFunc
	// RuntimeClasses resolve a pod's spec.runtimeClassName to its handler,
	// as the kubelet's RuntimeClass manager does, from a shared informer.
	RuntimeClasses nodev1listers.RuntimeClassLister
	// ServiceRelay relays the connections of pods to the cluster Services
	// their annotation rbn.dev/cluster-services names, and Forwarders has
	// the program that listens for them in the pod; one of each serves
	// every node of the process. Without them such pods wait.
	ServiceRelay *svcrelay.Relay
	Forwarders   *Forwarders
	// Services resolve the cluster Services a pod's annotation
	// rbn.dev/cluster-services names, for its /etc/hosts and its
	// connections to them (nil: such pods wait).
	Services corev1listers.ServiceLister
	// Claims and Volumes resolve a pod's persistentVolumeClaim volumes to
	// their PersistentVolumes, from shared informers; nil: such a pod waits.
	Claims  corev1listers.PersistentVolumeClaimLister
	Volumes corev1listers.PersistentVolumeLister
	Token   TokenFunc
	// Relay carries the pods' S3 transfers (annotation rbn.dev/transfers);
	// nil: a default one for this node alone, with Egress.
	Relay *s3relay.Relay
	// Egress is where rbn-kubelet may connect for the pods' images pulled
	// through it (and S3 when Relay is nil); nil: anywhere.
	Egress *egress.Policy
	// Known reports whether a pod UID still exists in Kubernetes, and
	// whether the answer can be trusted yet (informer synced). Podman pods
	// of unknown UIDs are orphans and get removed.
	Known func(uid types.UID) (known, synced bool)
	// Ended lists this node's pods that already ended (Succeeded or Failed),
	// once the informer has synced. virtual-kubelet never hands such pods to
	// the provider, yet their logs must stay readable until they are deleted.
	Ended func() []*corev1.Pod
	// Bound reports whether a pod of that name may be bound to this node
	// (the node's pod informer has it, or has not synced yet). A stream
	// request (logs, exec, attach, port-forward) for such a pod that has no
	// worker yet, because this node's runtime has just started (a restart,
	// a takeover from another replica), waits for its adoption (up to
	// adoptWait) instead of answering that the pod is not on this node.
	// Nil: no wait.
	Bound func(namespace, name string) bool
	// PodNetwork is the node's block of rbn's pod network: its pods join
	// the host's podman network of that subnet (PodNetworkName). Zero:
	// they join the host's default network.
	PodNetwork netip.Prefix
	// ResyncInterval is how often the node's containers are relisted, which
	// bounds how long a missed podman event can go unnoticed. Default 10s.
	ResyncInterval time.Duration
	// Retry spaces the retries of pod work that failed; zero fields take
	// their defaults (see RetryConfig).
	Retry RetryConfig
	Clock clock.WithTicker
}

// Pods implements virtual-kubelet's PodLifecycleHandler and PodNotifier for
// one host, with one worker goroutine per pod.
type Pods struct {
	cfg PodsConfig
	rt  podRuntime
	net *podNetwork // nil: the host's default network

	mu      sync.Mutex
	workers map[string]*podWorker // namespace/name
	byUID   map[types.UID]*podWorker
	notify  func(*corev1.Pod)
	ctx     context.Context // Run's, for workers started by CreatePod; nil before Run
	pending []*podWorker    // created before Run
	// workers run while Run does: Run waits for every one it started.
	running  sync.WaitGroup
	stopping bool // Run is returning: no worker starts any more
	done     chan struct{}

	// diskPressure: the host is under disk pressure (DiskPressure), and
	// running pods measure their local storage for the ranking.
	diskPressure atomic.Bool

	// evictions counts the pods evicted, by the kubelet's eviction signal.
	evictions map[string]uint64
	// startDurations is kubelet_pod_start_duration_seconds: from a pod's
	// first sight to its running; startStages split it (startstages.go).
	startDurations prometheus.Histogram
	startStages    map[string]prometheus.Histogram
	// statusLatency: from a status change reported to its write
	// (statuslatency.go).
	statusLatency prometheus.Histogram
	// syncDurations is kubelet_pod_worker_duration_seconds, by operation.
	syncDurations map[string]prometheus.Histogram

	failures []time.Time   // host-caused failures (pull, create, start), newest last
	changed  chan struct{} // closed when running pods or failures change
	added    chan struct{} // closed when a worker is added
}

// failureWindow is how long a host-caused failure counts in RecentFailures.
const failureWindow = 10 * time.Minute

// Changed returns a channel closed at the next change of RunningPods or RecentFailures.
func (p *Pods) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *Pods) signalLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// podWorkers lists the node's pod workers, in no order.
func (p *Pods) podWorkers() []*podWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Collect(maps.Values(p.workers))
}

// RunningPods counts the pods this node runs that have not ended.
func (p *Pods) RunningPods() int {
	n := 0
	for _, w := range p.podWorkers() {
		if !w.hasEnded() {
			n++
		}
	}
	return n
}

// RecentFailures counts host-caused failures in the last failureWindow.
func (p *Pods) RecentFailures() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	cutoff := p.cfg.Clock.Now().Add(-failureWindow)
	i := 0
	for i < len(p.failures) && p.failures[i].Before(cutoff) {
		i++
	}
	p.failures = p.failures[i:]
	return len(p.failures)
}

// hostFailure records a failure the host caused (not the pod's own exit).
func (p *Pods) hostFailure() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failures = append(p.failures, p.cfg.Clock.Now())
	p.signalLocked()
}

// NewPods returns the pod handler of one host.
func NewPods(cfg PodsConfig) (*Pods, error) {
	if cfg.Host == nil || cfg.Recorder == nil || cfg.Objects == nil || cfg.TransferSecret == nil || cfg.RuntimeClasses == nil {
		return nil, errors.New("pods: host, recorder, objects and listers are required")
	}
	if cfg.Relay == nil {
		r, err := s3relay.New(s3relay.Config{Egress: cfg.Egress})
		if err != nil {
			return nil, err
		}
		cfg.Relay = r
	}
	return newPods(cfg, newHostRuntime(cfg.Host, cfg.Spec, cfg.Egress)), nil
}

// newPods returns the pod handler of a node whose pods run on rt, with
// cfg's defaults filled in.
func newPods(cfg PodsConfig, rt podRuntime) *Pods {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 10 * time.Second
	}
	cfg.Retry = cfg.Retry.withDefaults()
	return &Pods{cfg: cfg, rt: rt, net: newPodNetwork(cfg.NodeName, cfg.PodNetwork), workers: map[string]*podWorker{}, byUID: map[types.UID]*podWorker{},
		startDurations: newPodStartHistogram(), startStages: newStartStageHistograms(), statusLatency: newStatusLatencyHistogram(),
		syncDurations: newPodWorkerHistograms(),
		changed:       make(chan struct{}), added: make(chan struct{}), done: make(chan struct{})}
}

// StartStages are the node's rbn_pod_start_stage_duration_seconds, by
// stage (StartStages), for rbn's metrics.
func (p *Pods) StartStages() map[string]prometheus.Histogram { return p.startStages }

// workerOf returns the worker of a pod UID, nil if none.
func (p *Pods) workerOf(uid types.UID) *podWorker {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byUID[uid]
}

func key(namespace, name string) string { return namespace + "/" + name }

// CreatePod starts a worker for a pod bound to this node. It returns at
// once: pulls and starts happen in the worker and show in the pod's status.
// A worker finds what a previous rbn-kubelet left running for the pod and
// carries on from there, so a restart neither restarts nor duplicates it.
func (p *Pods) CreatePod(_ context.Context, pd *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := key(pd.Namespace, pd.Name)
	if w, ok := p.workers[k]; ok {
		if w.uid() == pd.UID {
			w.update(pd)
			return nil
		}
	}
	p.launchLocked(newPodWorker(p, pd))
	return nil
}

// launchLocked registers w and starts it, or queues it for Run when the
// node's runtime has not started yet.
func (p *Pods) launchLocked(w *podWorker) {
	p.addLocked(w)
	if p.ctx == nil {
		p.pending = append(p.pending, w)
	} else {
		p.startLocked(w)
	}
}

// addLocked registers w as its pod's worker and wakes the requests
// waiting for it (see worker).
func (p *Pods) addLocked(w *podWorker) {
	pd := w.current()
	p.workers[key(pd.Namespace, pd.Name)] = w
	p.byUID[pd.UID] = w
	close(p.added)
	p.added = make(chan struct{})
}

// adoptWait bounds how long a stream request waits for the worker of a
// pod bound to this node: the node's runtime just started and adopts its
// pods (the pod controller's first sync; ended pods once the host answers).
const adoptWait = 30 * time.Second

// worker returns the worker of a pod. A pod bound to this node that has
// none yet is being adopted: the request waits for it (up to adoptWait,
// and while ctx lasts) rather than fail with "not on this node" for the
// first seconds after a restart or a takeover.
func (p *Pods) worker(ctx context.Context, namespace, name string) (*podWorker, error) {
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		w, ok := p.workers[key(namespace, name)]
		added := p.added
		p.mu.Unlock()
		if ok {
			return w, nil
		}
		if p.cfg.Bound == nil || !p.cfg.Bound(namespace, name) {
			return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
		}
		if timeout == nil {
			timeout = p.cfg.Clock.After(adoptWait)
		}
		select {
		case <-added:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timeout:
			return nil, fmt.Errorf("pod %s/%s is bound to node %s, which has not adopted it within %s", namespace, name, p.cfg.NodeName, adoptWait)
		}
	}
}

// startLocked runs w under Run's context, unless Run is returning (then
// the pod is left as it is on the host, for the next rbn-kubelet to adopt).
func (p *Pods) startLocked(w *podWorker) {
	if p.stopping {
		return
	}
	p.running.Add(1)
	go func() {
		defer p.running.Done()
		w.run(p.ctx)
	}()
}

// stopWorkers waits for every worker Run started, once Run's context ended.
func (p *Pods) stopWorkers() {
	p.mu.Lock()
	p.stopping = true
	p.mu.Unlock()
	p.running.Wait()
}

// Done is closed once Run has returned.
func (p *Pods) Done() <-chan struct{} { return p.done }

// UpdatePod takes spec changes Kubernetes allows on a running pod.
func (p *Pods) UpdatePod(_ context.Context, pd *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[key(pd.Namespace, pd.Name)]
	p.mu.Unlock()
	if !ok || w.uid() != pd.UID {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pd.Namespace, pd.Name)
	}
	w.update(pd)
	return nil
}

// PodConditionsChanged takes a pod as the API has it after a change of
// its status, for the conditions other controllers own (readiness gates,
// DisruptionTarget): virtual-kubelet hands the provider spec changes only,
// and writes the status whole, so rbn reports those conditions with its
// own, and Ready waits for the readiness gates they satisfy.
func (p *Pods) PodConditionsChanged(pd *corev1.Pod) {
	p.mu.Lock()
	w := p.byUID[pd.UID]
	p.mu.Unlock()
	if w != nil {
		w.observeConditions(pd)
	}
}

// DeletePod stops the pod within what is left of its grace period and
// removes it from the host, and returns when that is done, having reported
// the final status: virtual-kubelet then deletes the pod object, so a pod
// is gone from the API only once nothing of it is left on the host, as
// with kubelet.
//
// A pod deleted while no rbn-kubelet served the node (a restart, a
// takeover by another replica) has no worker: virtual-kubelet never
// creates a pod marked for deletion, it deletes it. It is adopted here,
// for its teardown alone, so that its containers get their preStop hooks
// and SIGTERM; otherwise they would run on until virtual-kubelet
// force-deleted the pod object and the orphan sweep SIGKILLed them.
func (p *Pods) DeletePod(ctx context.Context, pd *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[key(pd.Namespace, pd.Name)]
	if !ok && pd.DeletionTimestamp != nil && !p.stopping {
		w = newPodWorker(p, pd)
		// Its infra container's, as reported before: for httpGet preStop
		// hooks, with no sandbox set up by this worker.
		w.sandbox.ip = pd.Status.PodIP
		p.launchLocked(w)
		ok = true
		w.log.Info("adopting a pod deleted while the node was not served, to stop it")
	}
	p.mu.Unlock()
	if !ok {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pd.Namespace, pd.Name)
	}
	w.terminate(deletionGrace(pd, p.cfg.Clock.Now()))
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deletionGrace is what is left at now of the grace period of pd, being
// deleted: until its deletionTimestamp, which the API server sets to the
// time of the delete plus deletionGracePeriodSeconds. Most of it is left
// when virtual-kubelet hands the deletion over at once; less, or none, for
// a pod deleted while no rbn-kubelet served the node. Rounded up to the
// second, the timestamp's precision; never more than the grace period (a
// clock behind the API server's); never less than minStopGrace (or the
// grace period if shorter), kubelet's minimal shutdown window: a pod whose
// grace ran out meanwhile still gets its preStop hooks and SIGTERM.
func deletionGrace(pd *corev1.Pod, now time.Time) time.Duration {
	grace := podGracePeriod(pd)
	if pd.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pd.DeletionGracePeriodSeconds) * time.Second
	}
	if pd.DeletionTimestamp == nil || grace <= 0 {
		return max(grace, 0)
	}
	left := pd.DeletionTimestamp.Sub(now)
	left = (left + time.Second - 1) / time.Second * time.Second
	return min(grace, max(left, min(grace, minStopGrace)))
}

// finished forgets a worker whose pod is gone from the host.
func (p *Pods) finished(w *podWorker) {
	pd := w.current()
	p.mu.Lock()
	if p.workers[key(pd.Namespace, pd.Name)] == w {
		delete(p.workers, key(pd.Namespace, pd.Name))
	}
	delete(p.byUID, pd.UID)
	p.cfg.Objects.Forget(pd.UID)
	notify := p.notify
	p.signalLocked()
	p.mu.Unlock()
	if notify != nil {
		final := pd.DeepCopy()
		// Nothing runs any more: make sure no container reads as running.
		for i := range final.Status.ContainerStatuses {
			markTerminated(&final.Status.ContainerStatuses[i])
		}
		for i := range final.Status.InitContainerStatuses {
			markTerminated(&final.Status.InitContainerStatuses[i])
		}
		if final.Status.Phase != corev1.PodSucceeded {
			final.Status.Phase = corev1.PodFailed
		}
		notify(final)
	}
}

func markTerminated(s *corev1.ContainerStatus) {
	if s.State.Terminated != nil {
		return
	}
	s.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown", Message: "the pod was deleted"}}
	s.Ready = false
}

// GetPod returns the pod as this node knows it.
func (p *Pods) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	w, ok := p.workers[key(namespace, name)]
	p.mu.Unlock()
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	return w.current(), nil
}

// GetPodStatus returns the pod's status.
func (p *Pods) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pd, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pd.Status, nil
}

// GetPods returns every pod on this node.
func (p *Pods) GetPods(_ context.Context) ([]*corev1.Pod, error) {
	ws := p.podWorkers()
	out := make([]*corev1.Pod, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.current())
	}
	return out, nil
}

// NotifyPods registers virtual-kubelet's status callback.
func (p *Pods) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
}

// setStatus stores a worker's computed status and reports it if it changed.
func (p *Pods) setStatus(w *podWorker, st corev1.PodStatus) {
	w.mu.Lock()
	changed := !equalStatus(&w.pod.Status, &st)
	if changed && w.statusPending.IsZero() {
		w.statusPending = p.cfg.Clock.Now()
	}
	phaseChanged := w.pod.Status.Phase != st.Phase
	// As the kubelet: a pod seen Pending (or new) that now runs has started.
	started := (w.pod.Status.Phase == "" || w.pod.Status.Phase == corev1.PodPending) && st.Phase == corev1.PodRunning
	w.pod.Status = st
	pd := w.pod.DeepCopy()
	w.mu.Unlock()
	if started {
		now := p.cfg.Clock.Now()
		p.startDurations.Observe(now.Sub(w.firstSeen).Seconds())
		for stage, d := range w.start.split(w.firstSeen, now, w.images.pulled) {
			p.startStages[stage].Observe(d.Seconds())
		}
	}
	if !changed {
		return
	}
	p.mu.Lock()
	notify := p.notify
	if phaseChanged {
		p.signalLocked()
	}
	p.mu.Unlock()
	if notify != nil {
		notify(pd)
	}
}

// failPod reports a pod that can never run here, with the reason.
func (p *Pods) failPod(w *podWorker, reason, msg string) {
	pd := w.current()
	p.event(pd, corev1.EventTypeWarning, reason, msg)
	now := metav1.NewTime(p.cfg.Clock.Now())
	st := corev1.PodStatus{Phase: corev1.PodFailed, Reason: reason, Message: msg, StartTime: &now, HostIP: p.hostIP()}
	for _, cs := range []struct {
		spec []corev1.Container
		out  *[]corev1.ContainerStatus
	}{{pd.Spec.InitContainers, &st.InitContainerStatuses}, {pd.Spec.Containers, &st.ContainerStatuses}} {
		for _, c := range cs.spec {
			*cs.out = append(*cs.out, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
				State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 128, Reason: reason, Message: msg}}})
		}
	}
	st.Conditions = podConditions(&pd.Spec, corev1.PodFailed, false, st.InitContainerStatuses, st.ContainerStatuses, nil, w.externalConditions(), now)
	p.setStatus(w, st)
}

func (p *Pods) event(pd *corev1.Pod, typ, reason, msg string) {
	p.cfg.Recorder.Event(pd, typ, reason, msg)
}
