package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
// (sandbox, pull, create, start, restart) and reports status. Syncs are
// triggered by podman events for the pod, by spec updates, by back-off
// timers and by the node's periodic relist (Pods.relist) when it sees the
// pod's containers change. A worker polls on its own only for a pod with
// secret, configMap, downwardAPI or projected volumes, whose content it
// renders again about every minute as kubelet does (refresh.go).
//
// The worker holds the pod's state machine; its collaborators hold their
// own state: the sandbox (podman pod and infra container), the images, the
// volumes and the S3 transfers.
type podWorker struct {
	p   *Pods
	log *slog.Logger
	// firstSeen is when this process first saw the pod (the worker's
	// creation): kubelet_pod_start_duration_seconds counts from it; start
	// marks its stages (the worker goroutine's).
	firstSeen time.Time
	start     startMarks

	kick chan struct{}
	done chan struct{}
	// accounted is the fingerprint (relist.go) of the pod's containers in
	// the state the worker's last sync accounted for (hostacts.go): a
	// relist that finds them so wakes no one. nil while a sync runs and
	// after one that did not finish.
	accounted atomic.Pointer[string]

	mu       sync.Mutex
	pod      *corev1.Pod // latest spec; Status is what we last reported
	deleting *time.Duration
	// external are the pod's conditions that other controllers own, as the
	// API last had them (see ownCondition): reported with ours, and read by
	// the readiness gates.
	external []corev1.PodCondition
	// metaChanged: the pod's labels or annotations changed, which
	// downwardAPI volumes show; they are refreshed at the next sync.
	metaChanged bool
	// statusPending is when the oldest status change not yet written to
	// the API was reported (zero: all written).
	statusPending time.Time
	// synced: the worker synced the pod once; updated: its spec changed
	// since the last sync (kubelet_pod_worker_duration_seconds's types).
	synced, updated bool

	sandbox   *sandbox
	images    *imagePuller
	volumes   *podVolumes
	transfers *podTransfers
	probes    *podProbes
	// services relays to the pod's cluster Services while it runs
	// (clusterservices.go); nil: none, or not started.
	services *podServices

	// acts is what the running sync did on the host (hostacts.go).
	acts hostActs

	// Owned by the worker goroutine.
	plan    *pod.Plan
	backoff map[string]time.Time // container -> no restart before
	waiting map[string]reason    // container -> waiting reason, message
	emitted map[string]bool      // container IDs whose Started/Created events were sent
	token   podToken             // the pod's service account token, once requested
	// nextRefresh is when the Files volumes are next refreshed, and
	// refreshErr the last refresh failure reported (refresh.go).
	nextRefresh time.Time
	refreshErr  string
	// refreshAt is when the worker wakes to refresh the Files volumes
	// between syncs (zero: not before the next sync). Worker goroutine only.
	refreshAt time.Time
	// planned is the spec the plan was made from, and unapplied the spec
	// changes since then last reported (pod.UnappliedChanges), to report
	// each once.
	planned   *corev1.PodSpec
	unapplied string
	// messages holds the termination messages read (from the runs' files
	// or logs), by container ID (see terminationMessages).
	messages map[string]string
	// stoppedBy is why rbn stopped the pod and failed it (past its
	// activeDeadlineSeconds, evicted for its local storage); nil: it did not.
	stoppedBy *reason
	// nextStorageCheck is when the pod's local storage is next measured
	// against its limits (evict.go); released: the ended pod's disk
	// emptyDirs were emptied.
	nextStorageCheck time.Time
	released         bool
	// diskUsage is the pod's local storage as last measured (while it has
	// limits or the host is under disk pressure), for DiskPressure's
	// ranking; evictNow (under mu) is DiskPressure's request to evict it.
	diskUsage atomic.Pointer[podDiskUsage]
	evictNow  *reason
	// reclaimNow (under mu) is DiskPressure's request to remove the ended
	// pod's containers from the host; reclaimed: they were.
	reclaimNow   bool
	reclaimed    atomic.Bool
	failed       bool   // the pod failed permanently (unsupported spec, deadline, eviction)
	lastErr      string // last sync error reported as an event, to report each once
	lastNotReady string // last claim not ready reported as an event (VolumeNotReadyError)
	// ended: adopted after it ended, or its containers removed under disk
	// pressure; only serves logs and cleanup, never runs anything.
	ended bool
	// unhealthy holds the containers killed for failing a liveness or
	// startup probe, to be restarted whatever their exit code unless the
	// policy is Never (kubelet's computePodActions), by name; and killed
	// the runs killed so or for a failed postStart hook, by podman
	// container name (one per run), whose SIGKILL is no OOM kill.
	unhealthy map[string]bool
	killed    map[string]bool
	// carried holds, by container, what the runs of a sandbox removed
	// after its host rebooted leave for the status; sandboxLost: the
	// sandbox is to be made again (reboot.go).
	carried     map[string]carriedRun
	sandboxLost bool
	// ephemeralTried is how many ephemeral containers the spec had when
	// they were last translated (see addEphemeral).
	ephemeralTried int
	// interrupt cancels the lifecycle hook running, if any (see
	// interruptible): the pod is being deleted.
	interrupt context.CancelFunc
}

func newPodWorker(p *Pods, pd *corev1.Pod) *podWorker {
	log := p.cfg.Logger.With("pod", pd.Namespace+"/"+pd.Name, "uid", pd.UID)
	clk := p.cfg.Clock
	w := &podWorker{
		p: p, log: log, firstSeen: clk.Now(),
		kick: make(chan struct{}, 1), done: make(chan struct{}),
		pod:       pd.DeepCopy(),
		external:  externalConditions(&pd.Status),
		sandbox:   &sandbox{rt: p.rt},
		images:    newImagePuller(p.rt, clk, p.event, log),
		volumes:   newPodVolumes(p.rt, clk, pd.UID),
		transfers: newPodTransfers(p.rt, clk, p.event, p.cfg.TransferSecret, p.cfg.Relay, pd.UID),
		backoff:   map[string]time.Time{}, waiting: map[string]reason{}, emitted: map[string]bool{},
		unhealthy: map[string]bool{}, killed: map[string]bool{}, carried: map[string]carriedRun{},
	}
	w.probes = newPodProbes(p.rt, clk, w.poke, func(eventType, reason, message string) {
		p.event(w.current(), eventType, reason, message)
	})
	return w
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

// statusView is the pod's name, namespace and UID with a copy of its
// status: all the node's /metrics and /runningpods/ read of a pod, without
// the copy of its spec that current makes (most of what a scrape copied).
func (w *podWorker) statusView() *corev1.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: w.pod.Namespace, Name: w.pod.Name, UID: w.pod.UID},
		Status:     *w.pod.Status.DeepCopy(),
	}
}

// runningContainerID is the podman ID of container's run that the pod's
// status last reported running, "" if none.
func (w *podWorker) runningContainerID(container string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := &w.pod.Status
	for _, css := range [][]corev1.ContainerStatus{st.ContainerStatuses, st.InitContainerStatuses, st.EphemeralContainerStatuses} {
		for i := range css {
			if cs := &css[i]; cs.Name == container && cs.State.Running != nil {
				id, ok := strings.CutPrefix(cs.ContainerID, containerIDPrefix)
				if ok {
					return id
				}
			}
		}
	}
	return ""
}

// usageFacts records what a stats reading takes of the pod, its start time
// and its containers' images, into u, without copying the pod.
func (w *podWorker) usageFacts(u *usage) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pod.Status.StartTime != nil {
		u.podStart[w.pod.UID] = w.pod.Status.StartTime.Time
	}
	podImages(w.pod, u.images)
}

// hasEnded says whether the pod's phase, as last reported, is final.
func (w *podWorker) hasEnded() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return pod.Ended(w.pod.Status.Phase)
}

func (w *podWorker) isDeleting() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.deleting != nil
}

// accountedFor says whether the worker's last sync accounted for the pod's
// containers in the state whose fingerprint (relist.go) is f.
func (w *podWorker) accountedFor(f string) bool {
	a := w.accounted.Load()
	return a != nil && *a == f
}

// poke schedules a sync.
func (w *podWorker) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// update takes a new spec from Kubernetes (status stays ours, but for
// the conditions other controllers own).
func (w *podWorker) update(pd *corev1.Pod) {
	w.mu.Lock()
	st := w.pod.Status
	if !maps.Equal(w.pod.Labels, pd.Labels) || !maps.Equal(w.pod.Annotations, pd.Annotations) {
		w.metaChanged = true
	}
	w.pod = pd.DeepCopy()
	w.pod.Status = st
	w.external = externalConditions(&pd.Status)
	w.updated = true
	w.mu.Unlock()
	w.poke()
}

// observeConditions takes the conditions other controllers own from the
// pod as the API has it, and reports the pod again when they changed.
func (w *podWorker) observeConditions(pd *corev1.Pod) {
	ext := externalConditions(&pd.Status)
	w.mu.Lock()
	changed := !equality.Semantic.DeepEqual(ext, w.external)
	if changed {
		w.external = ext
	}
	w.mu.Unlock()
	if changed {
		w.poke()
	}
}

func (w *podWorker) externalConditions() []corev1.PodCondition {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.external)
}

// terminate asks the worker to stop the pod with a grace period and clean up.
func (w *podWorker) terminate(grace time.Duration) {
	w.mu.Lock()
	if w.deleting == nil || grace < *w.deleting {
		w.deleting = &grace
	}
	if w.interrupt != nil {
		w.interrupt()
	}
	w.mu.Unlock()
	w.transfers.interrupt()
	w.poke()
}

func (w *podWorker) run(ctx context.Context) {
	defer close(w.done)
	for {
		op, start := w.syncOperation(), w.p.cfg.Clock.Now()
		r := w.sync(ctx)
		w.p.syncDurations[op].Observe(w.p.cfg.Clock.Since(start).Seconds())
		if r.finished {
			return
		}
		if !w.await(ctx, r.next) {
			return
		}
	}
}

// syncOperation names the sync about to run, as kubelet's pod workers do.
func (w *podWorker) syncOperation() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	first, updated := !w.synced, w.updated
	w.synced, w.updated = true, false
	switch {
	case w.deleting != nil:
		return syncKill
	case first:
		return syncCreate
	case updated:
		return syncUpdate
	}
	return syncSync
}

// await waits for a kick, or for next when it is positive; false when ctx
// ended. A refresh of the Files volumes due before then (refreshAt) runs on
// its own while it waits: they change with the API's objects and tokens,
// not with the containers, so nothing is listed or inspected on the host
// for them (a sync per running pod per minute did, which was most of the
// podman calls of an idle host with hundreds of pods).
func (w *podWorker) await(ctx context.Context, next time.Duration) bool {
	var syncAt time.Time
	if next > 0 {
		syncAt = w.p.cfg.Clock.Now().Add(next)
	}
	for {
		wake, refresh := syncAt, false
		if !w.refreshAt.IsZero() && (wake.IsZero() || w.refreshAt.Before(wake)) {
			wake, refresh = w.refreshAt, true
		}
		var timeout <-chan time.Time
		stop := func() {}
		if !wake.IsZero() {
			t := w.p.cfg.Clock.NewTimer(max(wake.Sub(w.p.cfg.Clock.Now()), time.Nanosecond))
			timeout, stop = t.C(), func() { t.Stop() }
		}
		select {
		case <-ctx.Done():
			stop()
			return false
		case <-w.kick:
			stop()
			return true
		case <-timeout:
		}
		if !refresh {
			return true
		}
		w.refreshBetweenSyncs(ctx)
	}
}

// refreshBetweenSyncs refreshes the Files volumes of a running pod, which
// sets when to again: the part of a sync that a refresh needs (step).
func (w *podWorker) refreshBetweenSyncs(ctx context.Context) {
	w.refreshAt = time.Time{}
	if w.isDeleting() || w.hasEnded() || w.failed || w.ended || w.plan == nil || !w.sandbox.ready || !w.p.rt.Ready() {
		return // the next sync sees to it
	}
	w.refreshVolumes(ctx, w.current())
}

// syncResult is what a sync tells the worker's loop.
type syncResult struct {
	// next is how soon to sync again; 0: nothing is pending, so not
	// before a kick.
	next time.Duration
	// finished: the pod is gone from the host, the worker ends.
	finished bool
}

// sync takes one step.
func (w *podWorker) sync(ctx context.Context) syncResult {
	w.mu.Lock()
	deleting := w.deleting
	w.mu.Unlock()
	if deleting != nil {
		w.probes.stop()
		if err := w.teardown(ctx, *deleting); err != nil {
			w.log.Warn("pod teardown failed, retrying", "err", err, "retryIn", w.p.cfg.Retry.Teardown)
			// A deletion that does not end (a podman that does not
			// answer) shows on the pod, once per distinct failure, with
			// kubelet's reason.
			if msg := "error killing pod: " + err.Error(); msg != w.lastErr {
				w.lastErr = msg
				w.p.event(w.current(), corev1.EventTypeWarning, "FailedKillPod", msg)
			}
			return syncResult{next: w.p.cfg.Retry.Teardown}
		}
		return syncResult{finished: true}
	}
	if w.failed || w.ended {
		w.probes.stop()
		return w.releaseEnded(ctx)
	}
	if !w.p.rt.Ready() {
		return syncResult{}
	}
	next, err := w.step(ctx)
	if err != nil {
		w.log.Info("pod sync incomplete", "err", err)
		// Tell the pod's owner once per distinct failure, as kubelet does.
		if msg := err.Error(); msg != w.lastErr && w.p.rt.Ready() {
			w.lastErr = msg
			reason := "FailedSync"
			var hostPath *HostPathTypeError
			var escape *HostPathEscapeError
			var mount *VolumeMountError
			switch {
			case errors.As(err, &hostPath), errors.As(err, &escape), errors.As(err, &mount):
				reason = "FailedMount" // the kubelet's, for the same check
			case !w.sandbox.ready:
				reason = "FailedCreatePodSandBox"
			}
			w.p.event(w.current(), corev1.EventTypeWarning, reason, msg)
		}
		if next == 0 {
			next = w.p.cfg.Retry.Sync
		}
		return syncResult{next: next}
	}
	w.lastErr = ""
	if w.hasEnded() {
		w.probes.stop()
		return w.releaseEnded(ctx) // then nothing changes without a kick: a deletion, a podman event
	}
	return syncResult{next: next}
}

// volumeNotReadyRetry is how soon a pod whose claim is not ready is looked
// at again.
const volumeNotReadyRetry = time.Second

// step brings the pod one step closer to its spec, then reports status.
func (w *podWorker) step(ctx context.Context) (time.Duration, error) {
	w.accounted.Store(nil)
	w.acts.reset()
	pd := w.current()
	if w.plan == nil {
		plan, err := w.p.translate(ctx, pd, "", &w.token)
		var unsupported *pod.UnsupportedError
		var missing *pod.MissingObjectError
		var notReady *pod.VolumeNotReadyError
		switch {
		case errors.As(err, &unsupported):
			w.failed = true
			w.p.failPod(w, unsupported.Reason, err.Error())
			return 0, nil
		case errors.As(err, &missing):
			w.setWaitingAll(pd, "CreateContainerConfigError", err.Error())
			w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
			w.report(ctx, pd, nil)
			return w.p.cfg.Retry.Config, nil
		case errors.As(err, &notReady):
			// The kubelet's volume manager waits for the claim, in
			// ContainerCreating, with FailedMount events, looking again
			// every 300 ms: a claim bound just before the pod was
			// scheduled may reach this process's informer just after it.
			// One event per distinct cause.
			w.setWaitingAll(pd, "ContainerCreating", "")
			if msg := err.Error(); msg != w.lastNotReady {
				w.lastNotReady = msg
				w.p.event(pd, corev1.EventTypeWarning, "FailedMount", "Unable to attach or mount volumes: "+msg)
			}
			w.report(ctx, pd, nil)
			return min(w.p.cfg.Retry.Config, volumeNotReadyRetry), nil
		case err != nil:
			return 0, err
		}
		for _, warning := range plan.Warnings {
			w.p.event(pd, corev1.EventTypeWarning, warning.Reason, warning.Message)
		}
		if len(plan.InvalidEnvKeys) > 0 {
			w.p.event(pd, corev1.EventTypeWarning, "InvalidEnvironmentVariableNames",
				"Keys from envFrom were skipped since they are invalid environment variable names: "+strings.Join(plan.InvalidEnvKeys, ", "))
		}
		w.plan = plan
		w.planned = pd.Spec.DeepCopy()
		if w.start.planned.IsZero() {
			w.start.planned = w.p.cfg.Clock.Now()
		}
	}
	w.addEphemeral(ctx, pd)
	w.reportUnapplied(pd)
	if why := w.stoppedBy; why != nil {
		// Stopping it failed part way: again.
		return 0, w.stopAndFail(ctx, pd, *why, stopGrace(pd, *why))
	}
	if remaining, ok := untilDeadline(pd, w.p.cfg.Clock.Now()); ok && remaining <= 0 {
		return 0, w.exceedDeadline(ctx, pd)
	}
	// A podman pod this sync created holds no container yet: nothing to
	// observe before advance creates the first.
	fresh := false
	if !w.sandbox.ready {
		var failed *podFailure
		var err error
		if fresh, err = w.setUpSandbox(ctx); errors.As(err, &failed) {
			w.failed = true
			w.p.failPod(w, failed.reason, failed.msg)
			return 0, nil
		} else if err != nil && w.isDeleting() {
			return 0, nil // interrupted by the deletion: the next sync tears the pod down
		} else if err != nil {
			return 0, err
		}
		if w.start.sandboxed.IsZero() {
			w.start.sandboxed, w.start.pulledBefore = w.p.cfg.Clock.Now(), w.images.pulled
		}
		if w.plan.UsesPodIP {
			// Now the pod has an IP: resolve env that refers to it.
			plan, err := w.p.translate(ctx, pd, w.sandbox.ip, &w.token)
			if err != nil {
				return 0, err
			}
			w.plan = plan
		}
	}
	// before is the look advance acts on; a podman pod this sync created
	// holds no container of the pod's yet.
	obs, before := map[string]*observed{}, podLook{}
	if !fresh {
		var err error
		if obs, before, err = w.look(ctx); err != nil {
			return 0, err
		}
		if reset, err := w.lostRuns(ctx, pd, obs); err != nil {
			return 0, err
		} else if reset {
			w.poke() // at once: the next sync sets the sandbox up again
			return 0, nil
		}
	} else {
		w.withCarried(obs, w.p.bootID()) // a sandbox made again after a reboot
	}
	w.mu.Lock()
	evict := w.evictNow
	w.mu.Unlock()
	if evict != nil && !pod.Ended(pd.Status.Phase) {
		return 0, w.stopAndFail(ctx, pd, *evict, 0)
	}
	evicted, storageCheck, err := w.checkStorage(ctx, pd, obs)
	if evicted || err != nil {
		return 0, err
	}
	next := w.advance(ctx, pd, obs)
	if err := w.sandbox.settle(); err != nil {
		return 0, err
	}
	// after is the latest look (nil: none since what advance did).
	after := before
	if w.acts.any() {
		// Observe again so the status includes what advance started.
		after = nil
		if obs2, look, err := w.look(ctx); err == nil {
			obs, after = obs2, look
		}
	}
	// Once the app containers have ended for good (before advance looked,
	// or since), the sidecars stop before the pod is reported complete,
	// never after, as the status reported then is final.
	if w.appsEnded(pd, obs) && sidecarsRunning(w.plan, obs) > 0 {
		if failed := w.stopSidecars(ctx, pd, obs, podGracePeriod(pd)); len(failed) > 0 {
			return 0, fmt.Errorf("stop the sidecars of the completed pod: %v", failed)
		}
		after = nil
		if obs2, look, err := w.look(ctx); err == nil {
			obs, after = obs2, look
		}
	}
	w.probes.sync(ctx, slices.Concat(pd.Spec.InitContainers, pd.Spec.Containers), w.sandbox.ip, obs)
	w.report(ctx, pd, obs)
	if w.transfers.outputsDue() {
		err := w.transfers.upload(ctx, pd, w.plan)
		switch {
		case err != nil && w.isDeleting():
			return 0, nil // the next sync tears the pod down
		case err != nil:
			return 0, fmt.Errorf("upload outputs: %w", err) // interrupted: again at the next sync
		}
		w.failed = w.transfers.failure != nil
		w.report(ctx, pd, obs)
	}
	// The volumes are refreshed after the status is reported, which never
	// waits for their writes (on a busy host, a container run per volume
	// that changed, as after a takeover with new tokens); and only while
	// some container may still read them.
	// Further refreshes run between syncs (await).
	w.refreshAt = time.Time{}
	if !pod.Ended(w.current().Status.Phase) {
		w.refreshVolumes(ctx, pd)
	}
	// Wake up at the pod's deadline (counted from the startTime the first
	// report sets), checked at the top; 0 would mean no wake-up at all.
	if remaining, ok := untilDeadline(w.current(), w.p.cfg.Clock.Now()); ok && (next == 0 || remaining < next) {
		next = max(remaining, time.Nanosecond)
	}
	if storageCheck > 0 && (next == 0 || storageCheck < next) {
		next = storageCheck
	}
	w.account(before, after)
	return next, nil
}

// account tells the relist which state of the pod's containers this sync
// accounted for: the look after its actions when they explain every change
// it shows, else the look it acted on (hostacts.go).
func (w *podWorker) account(before, after podLook) {
	f := before.fingerprint()
	if after != nil && accountedFor(before, after, &w.acts) {
		f = after.fingerprint()
	}
	w.accounted.Store(&f)
}

// addEphemeral takes the debug containers added to the running pod (kubectl
// debug) into the plan, from a translation of the current spec; the rest of
// the plan stays as it was made. A debug container that cannot be run gets
// a Failed event and waits with the reason, once per spec.
func (w *podWorker) addEphemeral(ctx context.Context, pd *corev1.Pod) {
	if len(pd.Spec.EphemeralContainers) == len(w.plan.EphemeralContainers) || w.ephemeralTried == len(pd.Spec.EphemeralContainers) {
		return
	}
	w.ephemeralTried = len(pd.Spec.EphemeralContainers)
	plan, err := w.p.translate(ctx, pd, w.sandbox.ip, &w.token)
	if err != nil {
		w.p.event(pd, corev1.EventTypeWarning, "Failed", "Error: "+err.Error())
		for _, ec := range pd.Spec.EphemeralContainers[len(w.plan.EphemeralContainers):] {
			w.waiting[ec.Name] = reason{"CreateContainerConfigError", err.Error()}
		}
		return
	}
	w.plan.EphemeralContainers = plan.EphemeralContainers
	if w.plan.TerminationVolume == "" {
		// A debug container that is the pod's first with a
		// terminationMessagePath (see terminationFile).
		w.plan.TerminationVolume = plan.TerminationVolume
	}
	w.planned.EphemeralContainers = pd.Spec.EphemeralContainers
}

// reportUnapplied tells the pod's owner, once per distinct set, about the
// changes to the running pod's spec that rbn does not apply.
func (w *podWorker) reportUnapplied(pd *corev1.Pod) {
	changes := strings.Join(pod.UnappliedChanges(w.planned, &pd.Spec), ", ")
	if changes == w.unapplied {
		return
	}
	w.unapplied = changes
	if changes != "" {
		w.p.event(pd, corev1.EventTypeWarning, pod.WarningSpecChangeIgnored,
			"changed on the running pod, not applied on remote build nodes (recreate the pod to apply): "+changes)
	}
}

// stopRunning stops every running container of obs within grace, all at
// once, with the kubelet's Killing event for each, and says which could
// not be stopped.
func (w *podWorker) stopRunning(ctx context.Context, pd *corev1.Pod, obs map[string]*observed, grace time.Duration) map[string]error {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		failed = map[string]error{}
	)
	for cname, o := range obs {
		if !o.current.Running {
			continue
		}
		w.p.event(pd, corev1.EventTypeNormal, "Killing", "Stopping container "+cname)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.stopContainer(ctx, pd, findContainer(pd, cname), o.current.ID, grace); err != nil {
				mu.Lock()
				failed[cname] = err
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// teardown stops the pod's containers within grace, removes everything of
// the pod from the host and reports the final status.
func (w *podWorker) teardown(ctx context.Context, grace time.Duration) error {
	pd := w.current()
	obs, err := w.observe(ctx)
	if err != nil && !errors.Is(err, podman.ErrNotFound) {
		return err
	}
	// The app and init containers first, all at once; the native sidecars
	// after them, one after another, within what is left of the grace period.
	started := w.p.cfg.Clock.Now()
	sidecars := map[string]bool{}
	for i := range pd.Spec.InitContainers {
		if c := &pd.Spec.InitContainers[i]; pod.IsSidecar(c, true) {
			sidecars[c.Name] = true
		}
	}
	first := map[string]*observed{}
	for cname, o := range obs {
		if !sidecars[cname] || w.plan == nil {
			first[cname] = o
		}
	}
	failed := w.stopRunning(ctx, pd, first, grace)
	if w.plan != nil {
		maps.Copy(failed, w.stopSidecars(ctx, pd, obs, grace-w.p.cfg.Clock.Since(started)))
	}
	for cname, err := range failed {
		// Not fatal: removing the podman pod below kills what did not stop.
		w.log.Warn("stop container failed, removing it by force", "container", cname, "err", err)
	}
	if final, err := w.observe(ctx); err == nil {
		obs = final
	} else {
		w.log.Info("final status from the containers as last seen", "err", err)
	}
	// A pod adopted for its deletion alone (see DeletePod) has no plan, but
	// its containers ran: their exit is its final status. One whose
	// containers went under disk pressure has its final status already.
	if !w.reclaimed.Load() && (w.plan != nil || len(obs) > 0) {
		w.report(ctx, pd, obs)
	}
	if err := w.removeFromHost(ctx, pd); err != nil {
		return err
	}
	w.stopServices()
	if err := w.removeServicesDir(ctx); err != nil {
		return err
	}
	if err := w.volumes.remove(ctx); err != nil {
		return err
	}
	w.log.Info("pod removed from host")
	w.p.finished(w)
	return nil
}

// removeFromHost removes the pod's podman pod, with its containers, and
// any container of the pod outside it (one that never got its podman pod,
// the loader), killing what still runs.
func (w *podWorker) removeFromHost(ctx context.Context, pd *corev1.Pod) error {
	if err := w.p.rt.RemovePod(ctx, pod.PodName(pd.UID), 0); err != nil && !errors.Is(err, podman.ErrNotFound) {
		return err
	}
	list, err := w.p.rt.ListContainers(ctx, map[string]string{pod.LabelPodUID: string(pd.UID)})
	if err != nil {
		return fmt.Errorf("list the pod's containers: %w", err)
	}
	var errs []error
	for _, c := range list {
		if err := w.p.rt.RemoveContainer(ctx, c.ID, true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p *Pods) hostIP() string {
	if ip := net.ParseIP(p.cfg.Spec.Address); ip != nil {
		return ip.String()
	}
	return ""
}
