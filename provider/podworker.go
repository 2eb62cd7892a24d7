package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// podWorker drives one pod on the host, like kubelet's pod worker: every
// sync compares what runs with what the pod asks for, takes the next step
// (volumes, podman pod, pull, create, start, restart) and reports status.
// Syncs are triggered by podman events for the pod, by spec updates, by
// back-off timers and by the node's periodic relist (Pods.relist) when it
// sees the pod's containers change: a worker does not poll on its own.
type podWorker struct {
	p   *Pods
	log *slog.Logger

	kick chan struct{}
	done chan struct{}

	mu       sync.Mutex
	pod      *corev1.Pod // latest spec; Status is what we last reported
	deleting *time.Duration
	// transferCancel interrupts the S3 transfer in progress, if any.
	transferCancel context.CancelFunc

	// Owned by the worker goroutine.
	plan         *pod.Plan
	podID        string
	mountpoints  map[string]string
	backoff      map[string]time.Time // container -> no restart before
	waiting      map[string][2]string // container -> waiting reason, message
	pulled       map[string]bool      // images pulled or found by this worker
	pullFailures map[string]int       // container -> consecutive failed pulls
	emitted      map[string]bool      // container IDs whose Started/Created events were sent
	filled       map[string]bool      // Files volumes written (by K8sName)
	token        string               // the pod's service account token, once requested
	failed       bool                 // the pod failed permanently (unsupported spec)
	podIP        string
	sandbox      *pendingSandbox // infra container starting, see ensureSandbox
	lastErr      string          // last sync error reported as an event, to report each once
	// ended: adopted after it ended; only serves logs and cleanup, never runs anything.
	ended bool
	// Outputs (rbn.dev/transfers): awaited once every container succeeded,
	// done once uploaded, or failed for good (reason, message).
	awaitingOutputs bool
	outputsDone     bool
	outputFailure   *[2]string
}

func newPodWorker(p *Pods, pd *corev1.Pod) *podWorker {
	return &podWorker{
		p:    p,
		log:  p.cfg.Logger.With("pod", pd.Namespace+"/"+pd.Name, "uid", pd.UID),
		kick: make(chan struct{}, 1), done: make(chan struct{}),
		pod:     pd.DeepCopy(),
		backoff: map[string]time.Time{}, waiting: map[string][2]string{},
		pulled: map[string]bool{}, emitted: map[string]bool{}, pullFailures: map[string]int{}, filled: map[string]bool{},
	}
}

func (w *podWorker) uid() types.UID {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.UID
}

func (w *podWorker) current() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod.DeepCopy()
}

func (w *podWorker) isDeleting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deleting != nil
}

// poke schedules a sync.
func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// update takes a new spec from Kubernetes (status stays ours).
func (w *podWorker) update(pd *corev1.Pod) {
	w.mu.Lock()
	st := w.pod.Status
	w.pod = pd.DeepCopy()
	w.pod.Status = st
	w.mu.Unlock()
	w.poke()
}

// terminate asks the worker to stop the pod with a grace period and clean up.
func (w *podWorker) terminate(grace time.Duration) {
	w.mu.Lock()
	if w.deleting == nil || grace < *w.deleting {
		w.deleting = &grace
	}
	if w.transferCancel != nil {
		w.transferCancel()
	}
	w.mu.Unlock()
	w.poke()
}

func (w *podWorker) run(ctx context.Context) {
	defer close(w.done)
	for {
		next := w.sync(ctx)
		if next == -1 {
			return
		}
		if !w.await(ctx, next) {
			return
		}
	}
}

// await waits for a kick, or for next when it is positive; false when ctx ended.
func (w *podWorker) await(ctx context.Context, next time.Duration) bool {
	var timeout <-chan time.Time
	if next > 0 {
		t := w.p.cfg.Clock.NewTimer(next)
		defer t.Stop()
		timeout = t.C()
	}
	select {
	case <-ctx.Done():
		return false
	case <-w.kick:
	case <-timeout:
	}
	return true
}

// sync takes one step. It returns how soon to sync again (0: nothing is
// pending, so not before a kick), or -1 when the worker is finished.
func (w *podWorker) sync(ctx context.Context) time.Duration {
	w.mu.Lock()
	deleting := w.deleting
	w.mu.Unlock()
	if deleting != nil {
		if err := w.teardown(ctx, *deleting); err != nil {
			w.log.Warn("pod teardown failed, retrying", "err", err)
			return 5 * time.Second
		}
		return -1
	}
	if w.failed || w.ended {
		return 0
	}
	if !w.p.cfg.Host.ready() {
		return 0
	}
	next, err := w.step(ctx)
	if err != nil {
		w.log.Info("pod sync incomplete", "err", err)
		// Tell the pod's owner once per distinct failure, as kubelet does.
		if msg := err.Error(); msg != w.lastErr && w.p.cfg.Host.ready() {
			w.lastErr = msg
			reason := "FailedSync"
			if w.podID == "" {
				reason = "FailedCreatePodSandBox"
			}
			w.p.event(w.current(), corev1.EventTypeWarning, reason, msg)
		}
		if next == 0 {
			next = 5 * time.Second
		}
		return next
	}
	w.lastErr = ""
	if phase := w.current().Status.Phase; phase == corev1.PodSucceeded || phase == corev1.PodFailed {
		return 0 // nothing changes without a kick: a deletion, a podman event
	}
	return next
}

// step brings the pod one step closer to its spec, then reports status.
func (w *podWorker) step(ctx context.Context) (time.Duration, error) {
	pd := w.current()
	if w.plan == nil {
		plan, err := w.p.translate(ctx, pd, "", &w.token)
		var unsupported *pod.UnsupportedError
		var missing *pod.MissingObjectError
		switch {
		case errors.As(err, &unsupported):
			w.failed = true
			w.p.failPod(w, unsupported.Reason, err.Error())
			return 0, nil
		case errors.As(err, &missing):
			w.setWaitingAll(pd, "CreateContainerConfigError", err.Error())
			w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
			w.report(ctx, pd, nil)
			return configRetry, nil
		case err != nil:
			return 0, err
		}
		for _, probe := range plan.IgnoredProbes {
			w.p.event(pd, corev1.EventTypeWarning, "ProbeIgnored", probe+" is not run on remote build nodes: the container counts as ready once running")
		}
		if len(plan.InvalidEnvKeys) > 0 {
			w.p.event(pd, corev1.EventTypeWarning, "InvalidEnvironmentVariableNames",
				"Keys from envFrom were skipped since they are invalid environment variable names: "+strings.Join(plan.InvalidEnvKeys, ", "))
		}
		w.plan = plan
	}
	// A podman pod this sync created holds no container yet: nothing to
	// observe before advance creates the first.
	fresh := false
	if w.podID == "" {
		var failed *transferFailure
		var err error
		if fresh, err = w.ensureSandbox(ctx); errors.As(err, &failed) {
			w.failed = true
			w.p.failPod(w, failed.reason, failed.msg)
			return 0, nil
		} else if err != nil && w.isDeleting() {
			return 0, nil // interrupted by the deletion: the next sync tears the pod down
		} else if err != nil {
			return 0, err
		}
		if w.plan.UsesPodIP {
			// Now the pod has an IP: resolve env that refers to it.
			plan, err := w.p.translate(ctx, pd, w.podIP, &w.token)
			if err != nil {
				return 0, err
			}
			w.plan = plan
		}
	}
	obs := map[string]*observed{}
	if !fresh {
		var err error
		if obs, err = w.observe(ctx); err != nil {
			return 0, err
		}
	}
	next := w.advance(ctx, pd, obs)
	if err := w.awaitSandbox(); err != nil {
		// The next sync sets the podman pod up again, as one found existing.
		w.sandbox, w.podID, w.mountpoints = nil, "", nil
		return 0, err
	}
	w.sandbox = nil
	// Observe again so the status includes what advance started.
	if obs2, err := w.observe(ctx); err == nil {
		obs = obs2
	}
	w.report(ctx, pd, obs)
	if w.awaitingOutputs && !w.outputsDone && w.outputFailure == nil {
		err := w.withTransferContext(ctx, w.uploadOutputs)
		var failed *transferFailure
		switch {
		case errors.As(err, &failed):
			w.failed = true
			w.outputFailure = &[2]string{failed.reason, failed.msg}
			w.p.event(pd, corev1.EventTypeWarning, failed.reason, failed.msg)
		case err != nil && w.isDeleting():
			return 0, nil // the next sync tears the pod down
		case err != nil:
			return 0, fmt.Errorf("upload outputs: %w", err) // interrupted: again at the next sync
		default:
			w.outputsDone = true
		}
		w.report(ctx, pd, obs)
	}
	return next, nil
}

// ensureSandbox creates the pod's volumes and podman pod and fills its file
// volumes. fresh tells that it created the podman pod, which therefore holds
// no container of the pod's yet.
func (w *podWorker) ensureSandbox(ctx context.Context) (fresh bool, err error) {
	pc := w.p.cfg.Host.Podman()
	mp, err := w.createVolumes(ctx, w.plan)
	if err != nil {
		return false, err
	}
	// Create first: a pod that exists already (an earlier attempt, a
	// restarted rbn-kubelet) is a conflict, and a new one costs no lookup.
	id, err := pc.CreatePod(ctx, pod.PodSpec(w.plan))
	infraName := w.plan.InfraName()
	switch {
	case err == nil:
		fresh = true
	case !errors.Is(err, podman.ErrConflict):
		return false, err
	default:
		// Its infra container may predate deterministic infra names.
		info, err := pc.InspectPod(ctx, w.plan.PodName)
		if err != nil {
			return false, err
		}
		id, infraName = info.ID, info.InfraID
	}
	// The infra container alone: starting the podman pod would also start
	// every container of it that has exited, and a re-adopted pod's
	// completed containers must not run again.
	startInfra := func(ctx context.Context) (*podman.ContainerState, error) {
		if err := pc.StartContainer(ctx, infraName); err != nil {
			return nil, err
		}
		return pc.InspectContainer(ctx, infraName)
	}
	if fresh && !w.needsInfraFirst() {
		// Nothing before the first container needs the infra container
		// running: it starts while that container is created
		// (runContainer waits for it before starting one).
		w.sandbox = &pendingSandbox{done: make(chan struct{})}
		go func(sb *pendingSandbox) {
			defer close(sb.done)
			sb.infra, sb.err = startInfra(ctx)
		}(w.sandbox)
		w.mountpoints = mp
		w.podID = id
		return true, nil
	}
	infra, err := startInfra(ctx)
	if err != nil {
		return false, err
	}
	if err := w.fillVolumes(ctx, w.plan, infra.ImageID); err != nil {
		return false, err
	}
	if need, err := w.inputsNeeded(ctx, fresh); err != nil {
		return false, err
	} else if need {
		if err := w.withTransferContext(ctx, func(ctx context.Context) error { return w.stageInputs(ctx, infra.ImageID) }); err != nil {
			return false, err
		}
	}
	w.podIP = infra.IPAddress
	w.mountpoints = mp
	w.podID = id
	return fresh, nil
}

// pendingSandbox is the start of a new podman pod's infra container, under
// way while its first container is created.
type pendingSandbox struct {
	done  chan struct{}
	infra *podman.ContainerState
	err   error
}

// needsInfraFirst says whether something must happen between the infra
// container's start and the first container's creation: env that names the
// pod's IP, volume files written through a loader container (which runs the
// infra image), inputs to stage.
func (w *podWorker) needsInfraFirst() bool {
	return w.plan.UsesPodIP || len(loaderVolumes(w.plan)) > 0 ||
		w.plan.Transfers != nil && len(w.plan.Transfers.Inputs) > 0
}

// awaitSandbox waits for the infra container's start begun by
// ensureSandbox, if any, and returns how it went.
func (w *podWorker) awaitSandbox() error {
	if w.sandbox == nil {
		return nil
	}
	<-w.sandbox.done
	if w.sandbox.err == nil {
		w.podIP = w.sandbox.infra.IPAddress
	}
	return w.sandbox.err
}

// observe lists the pod's containers on the host: newest and previous run of each.
func (w *podWorker) observe(ctx context.Context) (map[string]*observed, error) {
	pc := w.p.cfg.Host.Podman()
	list, err := pc.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(w.uid())})
	if err != nil {
		return nil, err
	}
	type run struct {
		attempt int
		id      string
	}
	runs := map[string][]run{}
	for _, c := range list {
		name := c.Labels[pod.LabelContainer]
		if name == "" {
			continue // infra or loader
		}
		a, _ := strconv.Atoi(c.Labels[pod.LabelAttempt])
		runs[name] = append(runs[name], run{a, c.ID})
	}
	obs := map[string]*observed{}
	for name, rs := range runs {
		slices.SortFunc(rs, func(a, b run) int { return b.attempt - a.attempt })
		o := &observed{name: name, attempt: rs[0].attempt}
		if o.current, err = pc.InspectContainer(ctx, rs[0].id); err != nil {
			return nil, err
		}
		if len(rs) > 1 {
			if o.previous, err = pc.InspectContainer(ctx, rs[1].id); err != nil {
				return nil, err
			}
		}
		obs[name] = o
	}
	return obs, nil
}

// advance starts what should run next: the first unfinished init container,
// else every app container not running that the restart policy lets run.
// It returns how soon to try again: a back-off that ends, a configuration
// error to look at again (0: none pending).
func (w *podWorker) advance(ctx context.Context, pd *corev1.Pod, obs map[string]*observed) time.Duration {
	policy := pd.Spec.RestartPolicy
	for _, c := range w.plan.InitContainers {
		o := obs[c.K8sName]
		if o != nil && o.current.Running {
			return 0
		}
		if o != nil && o.current.Exited() && o.current.ExitCode == 0 {
			continue
		}
		if o != nil && o.current.Exited() || o != nil && o.current.Error != "" {
			// Failed init container: the pod fails under Never, else retries.
			if policy == corev1.RestartPolicyNever {
				return 0
			}
			return w.restartContainer(ctx, pd, c, o)
		}
		if o == nil {
			return w.runContainer(ctx, pd, c, 0, false)
		}
		return w.runContainer(ctx, pd, c, o.attempt, true) // created, never started
	}
	var next time.Duration
	for _, c := range w.plan.Containers {
		o := obs[c.K8sName]
		var d time.Duration
		switch {
		case o == nil:
			d = w.runContainer(ctx, pd, c, 0, false)
		case o.current.Running:
			continue
		case o.current.Exited() || o.current.Error != "":
			if !shouldRestart(policy, o.current.ExitCode) {
				continue
			}
			d = w.restartContainer(ctx, pd, c, o)
		default: // created, not started: start it
			d = w.runContainer(ctx, pd, c, o.attempt, true)
		}
		if d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	return next
}

// restartContainer runs c again once its crash back-off since the last run
// ended has passed: 10 s doubling per restart up to 5 min, as kubelet, and
// back to 10 s after a run that lasted 10 minutes.
func (w *podWorker) restartContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, o *observed) time.Duration {
	next := o.attempt + 1
	wait := restartBackoff(next)
	if last := o.current; !last.StartedAt.IsZero() && last.FinishedAt.Sub(last.StartedAt) >= 10*time.Minute {
		wait = restartBackoff(1)
	}
	ended := o.current.FinishedAt
	if ended.IsZero() {
		ended = w.p.cfg.Clock.Now()
	}
	if until := ended.Add(wait); w.p.cfg.Clock.Now().Before(until) {
		if _, ok := w.backoff[c.K8sName]; !ok {
			w.p.event(pd, corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container "+c.K8sName)
		}
		w.backoff[c.K8sName] = until
		return until.Sub(w.p.cfg.Clock.Now())
	}
	delete(w.backoff, c.K8sName)
	return w.runContainer(ctx, pd, c, next, false)
}

// configRetry is how soon a pod whose configuration is not usable yet (an
// object it references is missing, a subPath cannot be resolved) is looked
// at again.
const configRetry = 10 * time.Second

// runContainer pulls, creates and starts one run of c, honouring back-offs;
// created: the run's container exists already (created, never started), and
// is started as it is. It returns the time left on a back-off that kept it
// from running.
func (w *podWorker) runContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, attempt int, created bool) time.Duration {
	now := w.p.cfg.Clock.Now()
	if until, ok := w.backoff[c.K8sName]; ok && now.Before(until) {
		return until.Sub(now)
	}
	name := pod.ContainerName(w.uid(), c.K8sName, attempt)
	if !created {
		if d, ok := w.createContainer(ctx, pd, c, attempt); !ok {
			return d
		}
	}
	if !w.emitted["created/"+name] {
		w.emitted["created/"+name] = true
		w.p.event(pd, corev1.EventTypeNormal, "Created", "Created container "+c.K8sName)
	}
	if err := w.fillThrough(ctx, c, attempt, name); err != nil {
		w.p.hostFailure()
		w.waiting[c.K8sName] = [2]string{"CreateContainerError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return 10 * time.Second
	}
	delete(w.waiting, c.K8sName)
	if err := w.awaitSandbox(); err != nil {
		return 0 // step reports it and sets the pod up again
	}
	if err := w.p.cfg.Host.Podman().StartContainer(ctx, name); err != nil {
		// The run is over before it began: the restart policy and its
		// back-off take it from the container's exited state.
		w.p.hostFailure()
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return 0
	}
	if !w.emitted["started/"+name] {
		w.emitted["started/"+name] = true
		w.p.event(pd, corev1.EventTypeNormal, "Started", "Started container "+c.K8sName)
	}
	return 0
}

// createContainer pulls c's image and creates the container of one run of
// it. When it cannot, it records why and returns false with how soon to try
// again.
func (w *podWorker) createContainer(ctx context.Context, pd *corev1.Pod, c pod.Container, attempt int) (time.Duration, bool) {
	if err := w.ensureImage(ctx, pd, c); err != nil {
		w.pullFailures[c.K8sName]++
		return w.backOff(pd, c.K8sName, w.pullFailures[c.K8sName], "ImagePullBackOff", err), false
	}
	delete(w.pullFailures, c.K8sName)
	// Configuration errors are looked at again, as kubelet does: what a
	// subPath names may yet appear, created by another container.
	spec, err := pod.ContainerSpec(c, w.plan, attempt, w.podID, w.mountpoints)
	if err != nil {
		w.waiting[c.K8sName] = [2]string{"CreateContainerConfigError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return configRetry, false
	}
	if err := w.resolveSubPaths(ctx, c, spec); err != nil {
		reason := "CreateContainerConfigError"
		if !errors.Is(err, ErrSubPathOutsideVolume) && !errors.Is(err, ErrSubPathUnresolvable) {
			reason = "CreateContainerError" // the host did not answer
		}
		w.waiting[c.K8sName] = [2]string{reason, err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return configRetry, false
	}
	if _, err := w.p.cfg.Host.Podman().CreateContainer(ctx, spec); err != nil && !errors.Is(err, podman.ErrConflict) {
		// The image may have left the host since it was listed.
		delete(w.pulled, c.Image)
		w.p.cfg.Host.RefreshImages(ctx)
		w.p.hostFailure()
		w.waiting[c.K8sName] = [2]string{"CreateContainerError", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		return 10 * time.Second, false
	}
	return 0, true
}

// backOff records the failures-th consecutive failure to prepare a container
// (an image pull) and when to try again.
func (w *podWorker) backOff(pd *corev1.Pod, name string, failures int, reason string, err error) time.Duration {
	d := restartBackoff(failures)
	w.backoff[name] = w.p.cfg.Clock.Now().Add(d)
	w.waiting[name] = [2]string{reason, err.Error()}
	w.p.event(pd, corev1.EventTypeNormal, "BackOff", fmt.Sprintf("Back-off %s: %v", reason, err))
	return d
}

// ensureImage makes c's image present per its pull policy.
func (w *podWorker) ensureImage(ctx context.Context, pd *corev1.Pod, c pod.Container) error {
	if w.pulled[c.Image] {
		return nil
	}
	present, err := w.imagePresent(ctx, c.Image)
	if err != nil {
		return err
	}
	switch {
	case c.PullPolicy == corev1.PullNever && !present:
		err := fmt.Errorf("container image %q is not present with pull policy of Never", c.Image)
		w.waiting[c.K8sName] = [2]string{"ErrImageNeverPull", err.Error()}
		w.p.event(pd, corev1.EventTypeWarning, "ErrImageNeverPull", err.Error())
		return err
	case present && c.PullPolicy != corev1.PullAlways:
		w.p.event(pd, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", c.Image))
	default:
		w.waiting[c.K8sName] = [2]string{"ContainerCreating", ""}
		w.p.event(pd, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", c.Image))
		start := w.p.cfg.Clock.Now()
		how, err := w.pullImage(ctx, pd, c.Image)
		if err != nil {
			w.p.hostFailure()
			w.waiting[c.K8sName] = [2]string{"ErrImagePull", err.Error()}
			w.p.event(pd, corev1.EventTypeWarning, "Failed", fmt.Sprintf("Failed to pull image %q: %v", c.Image, err))
			return err
		}
		w.p.event(pd, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s%s", c.Image, w.p.cfg.Clock.Since(start).Round(time.Millisecond), how))
		w.p.cfg.Host.RefreshImages(ctx)
	}
	w.pulled[c.Image] = true
	delete(w.waiting, c.K8sName)
	return nil
}

// imagePresent tells whether ref is in the host's store. The host's image
// list (read with its facts, and after every pull) answers for a reference
// it names exactly, without a call; anything else, a short name say, is
// asked of podman, which resolves it as a pull would.
func (w *podWorker) imagePresent(ctx context.Context, ref string) (bool, error) {
	if _, found := slices.BinarySearch(w.p.cfg.Host.Images(), ref); found {
		return true, nil
	}
	return w.p.cfg.Host.Podman().ImageExists(ctx, ref)
}

func (w *podWorker) setWaitingAll(pd *corev1.Pod, reason, msg string) {
	for _, c := range append(slices.Clone(pd.Spec.InitContainers), pd.Spec.Containers...) {
		w.waiting[c.Name] = [2]string{reason, msg}
	}
}

// report computes the pod's status and tells virtual-kubelet when it changed.
func (w *podWorker) report(ctx context.Context, pd *corev1.Pod, obs map[string]*observed) {
	now := metav1.NewTime(w.p.cfg.Clock.Now())
	prev := pd.Status
	st := corev1.PodStatus{HostIP: w.p.hostIP(), StartTime: prev.StartTime, QOSClass: prev.QOSClass}
	if st.StartTime == nil {
		st.StartTime = &now
	}
	if st.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	}
	initDone := true
	statuses := func(cs []corev1.Container, init bool) []corev1.ContainerStatus {
		out := make([]corev1.ContainerStatus, 0, len(cs))
		for _, c := range cs {
			o := observed{name: c.Name, image: c.Image}
			if ob := obs[c.Name]; ob != nil {
				o = *ob
				o.image = c.Image
			}
			_, o.memoryLimited = c.Resources.Limits[corev1.ResourceMemory]
			if wr, ok := w.waiting[c.Name]; ok && (o.current == nil || !o.current.Running) {
				o.waitingReason, o.waitingMessage = wr[0], wr[1]
			}
			if !init && !initDone && o.current == nil && o.waitingReason == "" {
				o.waitingReason = "PodInitializing"
			}
			if o.current != nil && o.current.Exited() && o.waitingReason == "" && shouldRestartNow(pd, init, o.current.ExitCode) {
				if until, ok := w.backoff[c.Name]; ok && w.p.cfg.Clock.Now().Before(until) {
					o.waitingReason = "CrashLoopBackOff"
					o.waitingMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", until.Sub(w.p.cfg.Clock.Now()).Round(time.Second), c.Name, pd.Name)
				}
			}
			s := containerStatus(o)
			if init && (s.State.Terminated == nil || s.State.Terminated.ExitCode != 0) {
				initDone = false
			}
			out = append(out, s)
		}
		return out
	}
	st.InitContainerStatuses = statuses(pd.Spec.InitContainers, true)
	st.ContainerStatuses = statuses(pd.Spec.Containers, false)
	st.Phase = podPhase(&pd.Spec, st.InitContainerStatuses, st.ContainerStatuses)
	outputs := w.outputsCondition(&st)
	st.Conditions = podConditions(st.Phase, w.podID != "", st.InitContainerStatuses, st.ContainerStatuses, prev.Conditions, now)
	if outputs != nil {
		st.Conditions = append(st.Conditions, withTransitionTime(*outputs, prev.Conditions, now))
	}
	if w.podIP != "" {
		st.PodIP, st.PodIPs = w.podIP, []corev1.PodIP{{IP: w.podIP}}
	}
	w.p.setStatus(w, st)
}

func shouldRestartNow(pd *corev1.Pod, init bool, code int32) bool {
	if init {
		return pd.Spec.RestartPolicy != corev1.RestartPolicyNever && code != 0
	}
	return shouldRestart(pd.Spec.RestartPolicy, code)
}

// teardown stops the pod's containers within grace, removes everything of
// the pod from the host and reports the final status.
func (w *podWorker) teardown(ctx context.Context, grace time.Duration) error {
	pd := w.current()
	pc := w.p.cfg.Host.Podman()
	name := pod.PodName(pd.UID)
	obs, err := w.observe(ctx)
	if err != nil && !errors.Is(err, podman.ErrNotFound) {
		return err
	}
	var wg sync.WaitGroup
	for cname, o := range obs {
		if !o.current.Running {
			continue
		}
		w.p.event(pd, corev1.EventTypeNormal, "Killing", "Stopping container "+cname)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pc.StopContainer(ctx, o.current.ID, grace); err != nil {
				w.log.Warn("stop container", "container", cname, "err", err)
			}
		}()
	}
	wg.Wait()
	if final, err := w.observe(ctx); err == nil {
		obs = final
	}
	if w.plan != nil {
		w.report(ctx, pd, obs)
	}
	if err := pc.RemovePod(ctx, name, 0); err != nil && !errors.Is(err, podman.ErrNotFound) {
		return err
	}
	// Containers of a pod that never got its podman pod (or the loader).
	if list, err := pc.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(pd.UID)}); err == nil {
		for _, c := range list {
			_ = pc.RemoveContainer(ctx, c.ID, true)
		}
	}
	if err := w.removeVolumes(ctx); err != nil {
		return err
	}
	w.log.Info("pod removed from host")
	w.p.finished(w)
	return nil
}

func (p *Pods) hostIP() string {
	if ip := net.ParseIP(p.cfg.Spec.Address); ip != nil {
		return ip.String()
	}
	return ""
}

// equalStatus ignores heartbeat-like churn: conditions' times only move on change.
func equalStatus(a, b *corev1.PodStatus) bool { return equality.Semantic.DeepEqual(a, b) }
