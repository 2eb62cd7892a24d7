package provider

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// containerIDPrefix starts a container status's containerID, as the CRI's
// runtime name does ("containerd://..."): the podman ID follows.
const containerIDPrefix = "podman://"

// observed is what the worker knows of one Kubernetes container.
type observed struct {
	name string
	// current is the newest run's state (nil: never created).
	current *podman.ContainerState
	// previous is the run before it (for lastState), if any.
	previous *podman.ContainerState
	// attempt is current's restart count.
	attempt int
	// waitingReason/Message, when set, override "not created yet" (image
	// pull failures, back-off, config errors).
	waitingReason, waitingMessage string
	image                         string
	// memoryLimited: the container runs under a memory limit (see terminated).
	memoryLimited bool
	// killed holds the runs rbn killed for failing a probe or a postStart
	// hook, by podman container name: their SIGKILL exit is no OOM kill.
	killed map[string]bool
	// currentMessage and previousMessage are the termination messages of
	// current's and previous's runs, when they ended ("" for none).
	currentMessage, previousMessage string
	// bootID is the host's boot id as last read ("": unknown), to tell
	// whether a lost run was ended by a reboot.
	bootID string
}

// terminated renders one of o's ended runs.
func (o *observed) terminated(c *podman.ContainerState, message string) *corev1.ContainerStateTerminated {
	if c.Lost {
		return lostRun(c, o.bootID)
	}
	return terminated(c, o.memoryLimited && !o.killed[c.Name], message)
}

// Reasons of a lost run (podman.ContainerState.Lost).
const (
	// ReasonHostRebooted: the host rebooted while the container ran.
	ReasonHostRebooted = "HostRebooted"
	// ReasonContainerStatusUnknown: the run's end was not recorded, and the
	// host did not reboot (or its boot id is unknown): kubelet's reason for
	// a container whose end it cannot know.
	ReasonContainerStatusUnknown = "ContainerStatusUnknown"
)

// lostRun renders a run that podman lost track of, given the host's boot
// id now: ended by a reboot when the boot id the container was created in
// is another. Its exit code is podman.LostExitCode, its finish time unknown.
func lostRun(c *podman.ContainerState, bootID string) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    c.ExitCode,
		StartedAt:   metav1.NewTime(c.StartedAt),
		ContainerID: containerIDPrefix + c.ID,
	}
	t.Reason, t.Message = lostReason(c, bootID)
	return t
}

// lostReason says why a lost run ended, as far as the host tells.
func lostReason(c *podman.ContainerState, bootID string) (reason, message string) {
	if was := c.Labels[pod.LabelBootID]; was != "" && bootID != "" && was != bootID {
		return ReasonHostRebooted, fmt.Sprintf("the build host rebooted while the container ran (boot id %s, now %s)", was, bootID)
	}
	return ReasonContainerStatusUnknown, "the container stopped without its exit being recorded: its host's podman lost its run-time state (a reboot, or its tmp dir wiped)"
}

// containerStatus renders one container's Kubernetes status.
func containerStatus(o observed) corev1.ContainerStatus {
	st := corev1.ContainerStatus{Name: o.name, Image: o.image, RestartCount: int32(o.attempt)}
	if o.previous != nil && o.previous.Exited() {
		st.LastTerminationState = corev1.ContainerState{Terminated: o.terminated(o.previous, o.previousMessage)}
	}
	c := o.current
	switch {
	case o.waitingReason != "":
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: o.waitingReason, Message: o.waitingMessage}
		if c != nil && c.Exited() {
			st.LastTerminationState = corev1.ContainerState{Terminated: o.terminated(c, o.currentMessage)}
		}
	case c == nil || (!c.Running && c.StartedAt.IsZero() && c.Error == ""):
		st.State.Waiting = &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}
	case c.Running:
		st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(c.StartedAt)}
		st.Ready = true
		started := true
		st.Started = &started
	default:
		st.State.Terminated = o.terminated(c, o.currentMessage)
		started := false
		st.Started = &started
	}
	if c != nil {
		st.ContainerID = containerIDPrefix + c.ID
		st.ImageID = c.ImageID
	}
	return st
}

// exitSIGKILL is the exit code of a process killed by SIGKILL.
const exitSIGKILL = 128 + 9

// terminated renders an ended run, with message as its message unless the
// run's end says more (the runtime's error, an inferred OOM kill). OOM
// kills are what podman reports; on cgroup v1 hosts (runc, cgroupfs) podman
// never learns of them, so a SIGKILL exit under a memory limit is reported
// as OOMKilled too, saying so: rbn itself only kills containers when it
// deletes their pod, after which no status is reported, past the pod's
// deadline and for a failed liveness or startup probe, when the caller
// passes memoryLimited false.
func terminated(c *podman.ContainerState, memoryLimited bool, message string) *corev1.ContainerStateTerminated {
	t := &corev1.ContainerStateTerminated{
		ExitCode:    c.ExitCode,
		StartedAt:   metav1.NewTime(c.StartedAt),
		FinishedAt:  metav1.NewTime(c.FinishedAt),
		ContainerID: containerIDPrefix + c.ID,
	}
	switch {
	case c.OOMKilled:
		t.Reason = "OOMKilled"
	case memoryLimited && c.ExitCode == exitSIGKILL:
		t.Reason = "OOMKilled"
		t.Message = "killed by SIGKILL under its memory limit; the host's runtime did not report the OOM kill itself"
	case c.StartedAt.IsZero() && c.Error != "":
		// Created but the runtime could not run it.
		t.Reason, t.Message = "ContainerCannotRun", c.Error
		if t.ExitCode == 0 {
			t.ExitCode = 128
		}
	case c.ExitCode == 0:
		t.Reason = "Completed"
	default:
		t.Reason = "Error"
	}
	if t.Message == "" {
		t.Message = message
	}
	return t
}

// podPhase follows kubelet's getPhase: init containers first, then the app
// containers' states and the restart policy.
func podPhase(spec *corev1.PodSpec, init, app []corev1.ContainerStatus) corev1.PodPhase {
	for i, s := range init {
		if sidecarAt(spec, i) {
			// Past it once it has started; its later exits do not count.
			if s.Started != nil && *s.Started || s.State.Terminated != nil || s.LastTerminationState.Terminated != nil {
				continue
			}
			return corev1.PodPending
		}
		if t := s.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		if t := s.State.Terminated; t != nil && spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, s := range app {
		switch {
		case s.State.Running != nil:
			running++
		case s.State.Terminated != nil:
			stopped++
			if s.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case s.State.Waiting != nil:
			if s.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0 && stopped == len(app):
		if spec.RestartPolicy == corev1.RestartPolicyAlways {
			return corev1.PodRunning
		}
		if stopped == succeeded {
			return corev1.PodSucceeded
		}
		if spec.RestartPolicy == corev1.RestartPolicyNever {
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}

// sidecarAt says whether the i-th init container of spec is a native sidecar.
func sidecarAt(spec *corev1.PodSpec, i int) bool {
	return i < len(spec.InitContainers) && pod.IsSidecar(&spec.InitContainers[i], true)
}

// shouldRestart says whether an exited container runs again under the policy.
func shouldRestart(policy corev1.RestartPolicy, exitCode int32) bool {
	switch policy {
	case corev1.RestartPolicyAlways:
		return true
	case corev1.RestartPolicyOnFailure:
		return exitCode != 0
	}
	return false
}

// restartBackoff is kubelet's crash loop back-off: 10 s doubling to 5 min.
func restartBackoff(restarts int) time.Duration {
	d := 10 * time.Second
	for i := 1; i < restarts && d < 5*time.Minute; i++ {
		d *= 2
	}
	return min(d, 5*time.Minute)
}

// podConditions are the standard conditions for a computed status, then
// the external ones (set by other controllers, see ownCondition) as they
// are in the API. Ready also waits for the pod's readiness gates, which
// name external conditions, as on a kubelet.
func podConditions(spec *corev1.PodSpec, phase corev1.PodPhase, sandboxReady bool, init, app []corev1.ContainerStatus, prev, external []corev1.PodCondition, now metav1.Time) []corev1.PodCondition {
	initialized := true
	ready := len(app) > 0
	for i, s := range init {
		if sidecarAt(spec, i) {
			// Initialized once started; the pod is ready only while its
			// sidecars are, as on a kubelet.
			initialized = initialized && (s.Started != nil && *s.Started || s.LastTerminationState.Terminated != nil)
			ready = ready && s.Ready
			continue
		}
		if t := s.State.Terminated; t == nil || t.ExitCode != 0 {
			initialized = false
		}
	}
	for _, s := range app {
		ready = ready && s.Ready
	}
	if pod.Ended(phase) {
		ready = false
	}
	b := func(v bool) corev1.ConditionStatus {
		if v {
			return corev1.ConditionTrue
		}
		return corev1.ConditionFalse
	}
	podReady := corev1.PodCondition{Type: corev1.PodReady, Status: b(ready)}
	if ready {
		if msg := readinessGatesMessage(spec.ReadinessGates, external); msg != "" {
			podReady = corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: reasonReadinessGatesNotReady, Message: msg}
		}
	}
	want := []corev1.PodCondition{
		{Type: corev1.PodReadyToStartContainers, Status: b(sandboxReady)},
		{Type: corev1.PodInitialized, Status: b(initialized)},
		{Type: corev1.ContainersReady, Status: b(ready)},
		podReady,
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
	}
	for i := range want {
		want[i] = withTransitionTime(want[i], prev, now)
	}
	return append(want, external...)
}

// reasonReadinessGatesNotReady is kubelet's reason for a pod whose
// containers are ready while one of its readiness gates is not.
const reasonReadinessGatesNotReady = "ReadinessGatesNotReady"

// readinessGatesMessage says, in kubelet's words, which readiness gates
// hold the pod unready ("" when none does).
func readinessGatesMessage(gates []corev1.PodReadinessGate, conditions []corev1.PodCondition) string {
	var msgs []string
	for _, g := range gates {
		c := findCondition(conditions, g.ConditionType)
		switch {
		case c == nil:
			msgs = append(msgs, fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", g.ConditionType))
		case c.Status != corev1.ConditionTrue:
			msgs = append(msgs, fmt.Sprintf("the status of pod readiness gate %q is not \"True\", but %v", g.ConditionType, c.Status))
		}
	}
	return strings.Join(msgs, ", ")
}

func findCondition(conditions []corev1.PodCondition, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range conditions {
		if conditions[i].Type == t {
			return &conditions[i]
		}
	}
	return nil
}

// ownCondition tells the pod conditions rbn-kubelet writes, as kubelet
// owns its own (kubelet's PodConditionsByKubelet, and PodScheduled, which
// kubelet also rewrites). The others belong to other controllers (readiness
// gates, DisruptionTarget, ...): rbn reports them as the API has them.
func ownCondition(t corev1.PodConditionType) bool {
	switch t {
	case corev1.PodScheduled, corev1.PodReady, corev1.PodInitialized, corev1.ContainersReady,
		corev1.PodReadyToStartContainers, corev1.PodResizePending, corev1.PodResizeInProgress,
		ConditionOutputsUploaded:
		return true
	}
	return false
}

// externalConditions are the conditions of st that other controllers own.
func externalConditions(st *corev1.PodStatus) []corev1.PodCondition {
	var out []corev1.PodCondition
	for _, c := range st.Conditions {
		if !ownCondition(c.Type) {
			out = append(out, c)
		}
	}
	return out
}

// report computes the pod's status and tells virtual-kubelet when it changed.
func (w *podWorker) report(ctx context.Context, pd *corev1.Pod, obs map[string]*observed) {
	w.terminationMessages(ctx, &pd.Spec, obs)
	in := statusInput{
		Pod: pd, Observed: obs, Waiting: w.waiting, BackOff: w.backoff, Now: w.p.cfg.Clock.Now(),
		HostIP: w.p.hostIP(), PodIP: w.sandbox.ip, SandboxReady: w.sandbox.ready,
		Outputs: w.transfers.outputs(w.plan), StoppedBy: w.stoppedBy,
		Probes: w.probes.verdict, Killed: w.killed, Unhealthy: w.unhealthy,
		External: w.externalConditions(),
	}
	st, awaiting := podStatus(in)
	if awaiting {
		w.transfers.awaiting = true
	}
	w.p.setStatus(w, st)
}

// statusInput is what a pod's status is computed from: what its worker
// observed and decided, the spec, the time, the previous status.
type statusInput struct {
	// Pod holds the spec, and in Status the previous status.
	Pod *corev1.Pod
	// Observed is each container's newest and previous run on the host.
	Observed map[string]*observed
	// Waiting is why a container not running waits (pull failures, config
	// errors); BackOff, when it may run again.
	Waiting map[string]reason
	BackOff map[string]time.Time
	Now     time.Time
	HostIP  string
	PodIP   string
	// SandboxReady: the podman pod exists.
	SandboxReady bool
	Outputs      outputsState
	// StoppedBy, when set, is why rbn stopped the pod and failed it: past
	// its activeDeadlineSeconds (DeadlineExceeded), or evicted for its
	// local storage (Evicted).
	StoppedBy *reason
	// Probes is what the probes say of a running container's run (by
	// container ID); nil: nothing, every running container is started and
	// ready.
	Probes func(c *corev1.Container, id string) probeVerdict
	// Killed are the runs rbn killed for failing a probe or a postStart
	// hook, by podman container name (one per run); Unhealthy, the
	// containers killed for a probe, which run again whatever their exit
	// code unless the policy is Never, by Kubernetes name.
	Killed, Unhealthy map[string]bool
	// External are the pod's conditions that other controllers own, as
	// the API has them (see ownCondition).
	External []corev1.PodCondition
}

// outputsState is where a pod's outputs (rbn.dev/transfers) are.
type outputsState struct {
	Planned bool    // the pod has outputs
	Done    bool    // uploaded
	Failure *reason // failed for good
}

// podStatus is the pod's status computed from in. awaitingOutputs tells
// that the containers succeeded and the outputs are to be uploaded.
func podStatus(in statusInput) (_ corev1.PodStatus, awaitingOutputs bool) {
	pd := in.Pod
	now := metav1.NewTime(in.Now)
	prev := pd.Status
	st := corev1.PodStatus{HostIP: in.HostIP, StartTime: prev.StartTime, QOSClass: prev.QOSClass}
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
			sidecar := pod.IsSidecar(&c, init)
			o := observed{name: c.Name, image: c.Image}
			if ob := in.Observed[c.Name]; ob != nil {
				o = *ob
				o.image = c.Image
			}
			// rbn's own SIGKILL after the deadline's or a failed probe's
			// grace period is no OOM kill (see terminated).
			_, o.memoryLimited = c.Resources.Limits[corev1.ResourceMemory]
			if r := pd.Spec.Resources; r != nil {
				// Under the pod's memory limit (pod-level resources): its
				// container's cgroup has it too.
				_, podLimited := r.Limits[corev1.ResourceMemory]
				o.memoryLimited = o.memoryLimited || podLimited
			}
			o.memoryLimited = o.memoryLimited && in.StoppedBy == nil
			o.killed = in.Killed
			if wr, ok := in.Waiting[c.Name]; ok && (o.current == nil || !o.current.Running) {
				o.waitingReason, o.waitingMessage = wr.Reason, wr.Message
			}
			if !init && !initDone && o.current == nil && o.waitingReason == "" {
				o.waitingReason = "PodInitializing"
			}
			restart := (!init || sidecar) && in.Unhealthy[c.Name] && pd.Spec.RestartPolicy != corev1.RestartPolicyNever
			if o.current != nil && o.current.Exited() && o.waitingReason == "" && (restart || shouldRestartNow(pd, init, sidecar, o.current.ExitCode)) {
				if until, ok := in.BackOff[c.Name]; ok && in.Now.Before(until) {
					o.waitingReason = "CrashLoopBackOff"
					o.waitingMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", until.Sub(in.Now).Round(time.Second), c.Name, pd.Name)
				} else if restart {
					// Killed for a failed probe and not yet in its back-off:
					// never a terminated state, which with exit code 0 would
					// make the pod Succeeded before it runs again.
					o.waitingReason = "CrashLoopBackOff"
					o.waitingMessage = fmt.Sprintf("restarting failed container=%s pod=%s", c.Name, pd.Name)
				}
			}
			s := containerStatus(o)
			if s.State.Running != nil && in.Probes != nil && hasProbes(&c) {
				v := in.Probes(&c, o.current.ID)
				s.Ready, *s.Started = v.ready, v.started
			}
			if init && !sidecar {
				// kubelet's: an init container is ready once it completed.
				s.Ready = s.State.Terminated != nil && s.State.Terminated.ExitCode == 0
			}
			switch {
			case sidecar && s.State.Running != nil && (s.Started == nil || !*s.Started):
				initDone = false
			case sidecar && s.State.Running == nil && s.LastTerminationState.Terminated == nil && s.State.Terminated == nil:
				initDone = false
			case init && !sidecar && (s.State.Terminated == nil || s.State.Terminated.ExitCode != 0):
				initDone = false
			}
			out = append(out, s)
		}
		return out
	}
	st.InitContainerStatuses = statuses(pd.Spec.InitContainers, true)
	st.ContainerStatuses = statuses(pd.Spec.Containers, false)
	if len(pd.Spec.EphemeralContainers) > 0 {
		debug := make([]corev1.Container, len(pd.Spec.EphemeralContainers))
		for i := range pd.Spec.EphemeralContainers {
			debug[i] = corev1.Container(pd.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		}
		st.EphemeralContainerStatuses = statuses(debug, false)
	}
	trimMessages(&pd.Spec, &st)
	st.Phase = podPhase(&pd.Spec, st.InitContainerStatuses, st.ContainerStatuses)
	if in.StoppedBy != nil {
		st.Phase, st.Reason, st.Message = corev1.PodFailed, in.StoppedBy.Reason, in.StoppedBy.Message
	}
	outputs, awaitingOutputs := outputsCondition(&st, in.Outputs)
	st.Conditions = podConditions(&pd.Spec, st.Phase, in.SandboxReady, st.InitContainerStatuses, st.ContainerStatuses, prev.Conditions, in.External, now)
	if outputs != nil {
		st.Conditions = append(st.Conditions, withTransitionTime(*outputs, prev.Conditions, now))
	}
	if in.StoppedBy != nil && in.StoppedBy.Reason == reasonEvicted {
		// The kubelet's mark of a pod it evicted (PodDisruptionConditions).
		st.Conditions = append(st.Conditions, withTransitionTime(corev1.PodCondition{
			Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "TerminationByKubelet", Message: in.StoppedBy.Message,
		}, prev.Conditions, now))
	}
	if in.PodIP != "" {
		st.PodIP, st.PodIPs = in.PodIP, []corev1.PodIP{{IP: in.PodIP}}
	}
	return st, awaitingOutputs
}

func shouldRestartNow(pd *corev1.Pod, init, sidecar bool, code int32) bool {
	if sidecar {
		return true
	}
	if init {
		return pd.Spec.RestartPolicy != corev1.RestartPolicyNever && code != 0
	}
	return shouldRestart(pd.Spec.RestartPolicy, code)
}

// equalStatus ignores heartbeat-like churn: conditions' times only move on change.
func equalStatus(a, b *corev1.PodStatus) bool { return equality.Semantic.DeepEqual(a, b) }

// ConditionOutputsUploaded is the pod condition of a pod with outputs once
// its containers have succeeded: False while they upload (the pod stays
// Running), True once they are in S3 (the pod Succeeded).
const ConditionOutputsUploaded corev1.PodConditionType = "rbn.dev/OutputsUploaded"

// outputsCondition holds back the Succeeded phase of a pod whose outputs
// are not uploaded yet, and returns the condition that says so, and
// whether the outputs are awaited.
func outputsCondition(st *corev1.PodStatus, o outputsState) (*corev1.PodCondition, bool) {
	if st.Phase != corev1.PodSucceeded || !o.Planned {
		return nil, false
	}
	c := &corev1.PodCondition{Type: ConditionOutputsUploaded}
	switch {
	case o.Done:
		c.Status, c.Reason = corev1.ConditionTrue, "Uploaded"
	case o.Failure != nil:
		st.Phase, st.Reason, st.Message = corev1.PodFailed, o.Failure.Reason, o.Failure.Message
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, o.Failure.Reason, o.Failure.Message
	default:
		st.Phase = corev1.PodRunning
		c.Status, c.Reason, c.Message = corev1.ConditionFalse, "Uploading", "the containers succeeded; uploading the outputs to S3"
		return c, true
	}
	return c, false
}

// withTransitionTime keeps the condition's last transition time while its status stays.
func withTransitionTime(c corev1.PodCondition, prev []corev1.PodCondition, now metav1.Time) corev1.PodCondition {
	c.LastTransitionTime = now
	for _, p := range prev {
		if p.Type == c.Type && p.Status == c.Status {
			c.LastTransitionTime = p.LastTransitionTime
		}
	}
	return c
}
