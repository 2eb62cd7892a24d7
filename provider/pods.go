package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/internal/s3relay"
	"github.com/remote-build-nodes/rbn/provider/node"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// TokenFunc requests a service account token for a pod (TokenRequest API).
type TokenFunc func(ctx context.Context, pd *corev1.Pod, audiences []string, expirationSeconds int64) (string, error)

// PodsConfig configures Pods.
type PodsConfig struct {
	NodeName string
	Spec     *rbnv1.RemoteBuildNodeSpec
	Host     *Host
	Recorder record.EventRecorder
	Logger   *slog.Logger
	// Secrets and ConfigMaps come from the process's shared informers.
	Secrets    corev1listers.SecretLister
	ConfigMaps corev1listers.ConfigMapLister
	Token      TokenFunc
	// Relay carries the pods' S3 transfers (annotation rbn.dev/transfers);
	// nil: a default one for this node alone.
	Relay *s3relay.Relay
	// Known reports whether a pod UID still exists in Kubernetes, and
	// whether the answer can be trusted yet (informer synced). Podman pods
	// of unknown UIDs are orphans and get removed.
	Known func(uid types.UID) (known, synced bool)
	// Ended lists this node's pods that already ended (Succeeded or Failed),
	// once the informer has synced. virtual-kubelet never hands such pods to
	// the provider, yet their logs must stay readable until they are deleted.
	Ended func() []*corev1.Pod
	// ResyncInterval is how often the node's containers are relisted, which
	// bounds how long a missed podman event can go unnoticed. Default 10s.
	ResyncInterval time.Duration
	Clock          clock.WithTicker
}

// Pods implements virtual-kubelet's PodLifecycleHandler and PodNotifier for
// one host, with one worker goroutine per pod.
type Pods struct {
	cfg PodsConfig

	mu      sync.Mutex
	workers map[string]*podWorker // namespace/name
	byUID   map[types.UID]*podWorker
	notify  func(*corev1.Pod)
	ctx     context.Context // Run's, for workers started by CreatePod; nil before Run
	pending []*podWorker    // created before Run

	failures []time.Time   // host-caused failures (pull, create, start), newest last
	changed  chan struct{} // closed when running pods or failures change
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

// RunningPods counts the pods this node runs that have not ended.
func (p *Pods) RunningPods() int {
	p.mu.Lock()
	ws := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
	n := 0
	for _, w := range ws {
		w.mu.Lock()
		phase := w.pod.Status.Phase
		w.mu.Unlock()
		if phase != corev1.PodSucceeded && phase != corev1.PodFailed {
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
	if cfg.Host == nil || cfg.Recorder == nil || cfg.Secrets == nil || cfg.ConfigMaps == nil {
		return nil, errors.New("pods: host, recorder and listers are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Relay == nil {
		r, err := s3relay.New(s3relay.Config{})
		if err != nil {
			return nil, err
		}
		cfg.Relay = r
	}
	if cfg.ResyncInterval == 0 {
		cfg.ResyncInterval = 10 * time.Second
	}
	return &Pods{cfg: cfg, workers: map[string]*podWorker{}, byUID: map[types.UID]*podWorker{}, changed: make(chan struct{})}, nil
}

func key(namespace, name string) string { return namespace + "/" + name }

// ready reports the host usable for pod work.
func (h *Host) ready() bool {
	_, health := h.Snapshot()
	return health.Ready
}

// Run dispatches podman events to pod workers, resyncs, and removes orphans, until ctx ends.
func (p *Pods) Run(ctx context.Context) {
	p.mu.Lock()
	p.ctx = ctx
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, w := range pending {
		go w.run(ctx)
	}
	go p.watchEvents(ctx)
	relist := p.cfg.Clock.NewTicker(p.cfg.ResyncInterval)
	defer relist.Stop()
	gc := p.cfg.Clock.NewTicker(3 * p.cfg.ResyncInterval)
	defer gc.Stop()
	hostChanged := p.cfg.Host.Changed()
	var host readiness
	// Empty, not nil: the first relist wakes every pod that has containers,
	// so that a change between a worker's first sync and it is not missed.
	seen := podFingerprints{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-relist.C():
			if p.cfg.Host.ready() {
				seen = p.relist(ctx, seen)
			}
		case <-hostChanged:
			hostChanged = p.cfg.Host.Changed()
			if host.becameReady(p.cfg.Host.ready()) {
				p.adoptEnded(ctx)
				p.pokeAll()
			}
		case <-gc.C():
			if p.cfg.Host.ready() {
				p.adoptEnded(ctx)
				p.removeOrphans(ctx)
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
		if !p.cfg.Host.ready() {
			select {
			case <-ctx.Done():
				return
			case <-p.cfg.Host.Changed():
			}
			continue
		}
		events, err := p.cfg.Host.Podman().Events(ctx, map[string]string{pod.LabelNode: p.cfg.NodeName})
		if err != nil {
			p.cfg.Logger.Info("podman events unavailable, retrying", "err", err)
			t := p.cfg.Clock.NewTimer(2 * time.Second)
			select {
			case <-ctx.Done():
			case <-t.C():
			}
			t.Stop()
			continue
		}
		p.pokeAll() // catch up on what happened while not listening
		for e := range events {
			if !changesStatus(e.Action) {
				continue
			}
			uid := types.UID(e.Attributes[pod.LabelPodUID])
			p.mu.Lock()
			w := p.byUID[uid]
			p.mu.Unlock()
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

func (p *Pods) pokeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.workers {
		w.poke()
	}
}

// adoptEnded registers read-only workers for ended pods this process has no
// worker for (it restarted after they ended), so their logs stay readable.
func (p *Pods) adoptEnded(ctx context.Context) {
	if p.cfg.Ended == nil {
		return
	}
	for _, pd := range p.cfg.Ended() {
		p.mu.Lock()
		_, known := p.byUID[pd.UID]
		if !known {
			w := newPodWorker(p, pd)
			w.ended = true
			p.workers[key(pd.Namespace, pd.Name)] = w
			p.byUID[pd.UID] = w
			go w.run(ctx)
		}
		p.mu.Unlock()
	}
}

// removeOrphans removes podman pods, containers and volumes of this node
// whose Kubernetes pod no longer exists (deleted while rbn-kubelet was down,
// or ended pods that virtual-kubelet deletes without telling the provider).
func (p *Pods) removeOrphans(ctx context.Context) {
	if p.cfg.Known == nil {
		return
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
	pc := p.cfg.Host.Podman()
	sel := map[string]string{pod.LabelNode: p.cfg.NodeName}
	pods, err := pc.ListPods(ctx, sel)
	if err != nil {
		return
	}
	ctrs, _ := pc.ListContainers(ctx, sel)
	vols, _ := pc.ListVolumes(ctx, sel)
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
		return synced && !known
	}
	for _, x := range pods {
		if orphan(x.Labels) {
			p.cfg.Logger.Info("removing orphaned podman pod", "name", x.Name)
			_ = pc.RemovePod(ctx, x.Name, 0)
		}
	}
	for _, x := range ctrs {
		if orphan(x.Labels) {
			_ = pc.RemoveContainer(ctx, x.ID, true)
		}
	}
	for _, x := range vols {
		if orphan(x.Labels) {
			_ = pc.RemoveVolume(ctx, x.Name)
		}
	}
}

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
	w := newPodWorker(p, pd)
	p.workers[k] = w
	p.byUID[pd.UID] = w
	if p.ctx == nil {
		p.pending = append(p.pending, w)
	} else {
		go w.run(p.ctx)
	}
	return nil
}

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

// DeletePod stops the pod within its grace period and removes it from the
// host, and returns when that is done, having reported the final status:
// virtual-kubelet then deletes the pod object, so a pod is gone from the API
// only once nothing of it is left on the host, as with kubelet.
func (p *Pods) DeletePod(ctx context.Context, pd *corev1.Pod) error {
	p.mu.Lock()
	w, ok := p.workers[key(pd.Namespace, pd.Name)]
	p.mu.Unlock()
	if !ok {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pd.Namespace, pd.Name)
	}
	grace := 30 * time.Second
	if pd.DeletionGracePeriodSeconds != nil {
		grace = time.Duration(*pd.DeletionGracePeriodSeconds) * time.Second
	} else if pd.Spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*pd.Spec.TerminationGracePeriodSeconds) * time.Second
	}
	w.terminate(grace)
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finished forgets a worker whose pod is gone from the host.
func (p *Pods) finished(w *podWorker) {
	pd := w.current()
	p.mu.Lock()
	if p.workers[key(pd.Namespace, pd.Name)] == w {
		delete(p.workers, key(pd.Namespace, pd.Name))
	}
	delete(p.byUID, pd.UID)
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
	p.mu.Lock()
	ws := make([]*podWorker, 0, len(p.workers))
	for _, w := range p.workers {
		ws = append(ws, w)
	}
	p.mu.Unlock()
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
	phaseChanged := w.pod.Status.Phase != st.Phase
	w.pod.Status = st
	pd := w.pod.DeepCopy()
	w.mu.Unlock()
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
	st.Conditions = podConditions(corev1.PodFailed, false, st.InitContainerStatuses, st.ContainerStatuses, nil, now)
	p.setStatus(w, st)
}

func (p *Pods) event(pd *corev1.Pod, typ, reason, msg string) {
	p.cfg.Recorder.Event(pd, typ, reason, msg)
}

// pullSecrets returns the pod's imagePullSecrets that exist.
func (p *Pods) pullSecrets(pd *corev1.Pod) []*corev1.Secret {
	var out []*corev1.Secret
	for _, ref := range pd.Spec.ImagePullSecrets {
		if s, err := p.cfg.Secrets.Secrets(pd.Namespace).Get(ref.Name); err == nil {
			out = append(out, s)
		}
	}
	return out
}

// translate gathers what the pod references and plans the pod. podIP is
// empty before the pod's sandbox exists; env that names status.podIP is
// resolved by a second translation once it does. Service link variables are
// not injected: build hosts have no route to cluster IPs.
// translate renders the pod's plan for the host. token holds the pod's
// service account token when it has a projected one: requested when empty,
// else reused, so that the plan made again once the pod has an IP costs no
// second TokenRequest (kubelet, too, reuses a token until 80% of its life).
func (p *Pods) translate(ctx context.Context, pd *corev1.Pod, podIP string, token *string) (*pod.Plan, error) {
	in := pod.Input{
		Pod: pd, NodeName: p.cfg.NodeName, HostPathAllowlist: p.cfg.Spec.HostPathAllowlist,
		Secrets: map[string]*corev1.Secret{}, ConfigMaps: map[string]*corev1.ConfigMap{},
		PodIP: podIP, HostIP: p.hostIP(),
	}
	if info, _ := p.cfg.Host.Snapshot(); info != nil {
		_, in.NodeAllocatable = node.Resources(p.cfg.Spec, info)
	}
	secrets, configMaps := pod.ReferencedObjects(pd)
	for _, name := range secrets {
		if s, err := p.cfg.Secrets.Secrets(pd.Namespace).Get(name); err == nil {
			in.Secrets[name] = s
		}
	}
	for _, name := range configMaps {
		if c, err := p.cfg.ConfigMaps.ConfigMaps(pd.Namespace).Get(name); err == nil {
			in.ConfigMaps[name] = c
		}
	}
	if src := serviceAccountTokenSource(pd); src != nil {
		if p.cfg.Token == nil {
			return nil, errors.New("no token source for projected service account token")
		}
		exp := int64(3600)
		if src.ExpirationSeconds != nil {
			exp = *src.ExpirationSeconds
		}
		var aud []string
		if src.Audience != "" {
			aud = []string{src.Audience}
		}
		if *token == "" {
			tok, err := p.cfg.Token(ctx, pd, aud, exp)
			if err != nil {
				return nil, fmt.Errorf("service account token: %w", err)
			}
			*token = tok
		}
		in.ServiceAccountToken = *token
	}
	return pod.Translate(in)
}

// serviceAccountTokenSource returns the pod's first projected service account token source.
func serviceAccountTokenSource(pd *corev1.Pod) *corev1.ServiceAccountTokenProjection {
	for _, v := range pd.Spec.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				return src.ServiceAccountToken
			}
		}
	}
	return nil
}

// ContainerLogs streams a container's log; logs stay readable after the
// container ends, until the pod is deleted. tail < 0 means all lines (the
// kubelet API cannot otherwise tell tailLines=0 from no tailLines).
func (p *Pods) ContainerLogs(ctx context.Context, namespace, name, container string, opts vkapi.ContainerLogOpts, tail int) (io.ReadCloser, error) {
	p.mu.Lock()
	w, ok := p.workers[key(namespace, name)]
	p.mu.Unlock()
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	pd := w.current()
	spec := findContainer(pd, container)
	if spec == nil {
		return nil, errdefs.NotFoundf("container %q is not in pod %s/%s", container, namespace, name)
	}
	obs, err := w.observe(ctx)
	if err != nil {
		return nil, err
	}
	o := obs[container]
	if o == nil {
		return nil, errdefs.InvalidInputf("container %q in pod %s/%s is waiting to start", container, namespace, name)
	}
	target := o.current
	if opts.Previous {
		if o.previous == nil {
			return nil, errdefs.InvalidInputf("previous terminated container %q in pod %s/%s not found", container, namespace, name)
		}
		target = o.previous
	}
	rc, err := p.cfg.Host.Podman().Logs(ctx, target.ID, logOptions(opts, tail, spec.TTY, target.Running, p.cfg.Clock.Now()))
	if err != nil {
		return nil, err
	}
	if opts.LimitBytes > 0 {
		return limitedReadCloser{Reader: io.LimitReader(rc, int64(opts.LimitBytes)), Closer: rc}, nil
	}
	return rc, nil
}

// logOptions maps the kubelet API's log options onto podman's; a relative
// sinceSeconds counts back from now. Only a running container's log is
// followed: following one that has ended returns its whole log, as kubelet
// does, and podman 4's follow of an ended container's log loses data (it
// returned 1.8 of 20 MiB, with lines cut out).
func logOptions(opts vkapi.ContainerLogOpts, tail int, tty, running bool, now time.Time) podman.LogOptions {
	lo := podman.LogOptions{Follow: opts.Follow && !opts.Previous && running, Tail: tail, Timestamps: opts.Timestamps, TTY: tty}
	switch {
	case !opts.SinceTime.IsZero():
		lo.Since = opts.SinceTime
	case opts.SinceSeconds > 0:
		lo.Since = now.Add(-time.Duration(opts.SinceSeconds) * time.Second)
	}
	return lo
}

type limitedReadCloser struct {
	io.Reader
	io.Closer
}

func findContainer(pd *corev1.Pod, name string) *corev1.Container {
	for _, cs := range [][]corev1.Container{pd.Spec.Containers, pd.Spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i]
			}
		}
	}
	return nil
}
