package provider

import (
	"context"
	"errors"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/remote-build-nodes/rbn/internal/podman"
)

// A host that reboots while a pod runs takes its containers down without
// podman recording their end: podman resets their state when it starts
// again, and they read as created (podman 4) or exited with code 0
// (podman 5), with no finish time. podman.ContainerState.Lost marks those
// runs, with exit code podman.LostExitCode: the restart policy then treats
// them as failed, never as succeeded or as not yet started, and their
// status says HostRebooted (the host's boot id is not the one the
// container was created in) or ContainerStatusUnknown.

// carriedRun is what a container's runs in a sandbox removed after a
// reboot leave for the new sandbox: the newest run then (lost, or ended
// before the reboot) and its restart count.
type carriedRun struct {
	last    *podman.ContainerState
	attempt int
}

// lostRuns tells the user, once per run, about the runs the host lost:
// a Warning event saying why and what follows. When the pod runs on (its
// restart policy is not Never), the sandbox went with them (podman lost
// its state: its infra container and network namespace too), so on a run
// lost for the first time the sandbox is made again, as kubelet makes a
// new one when it finds the old one dead. The old podman pod goes with its
// containers (podman 4 with cgroupfs cannot add a container to a pod that
// lived through a reboot: "pod cgroup is not set", fixed in podman 4.6;
// and a restarted rbn-kubelet, which starts the old infra container again,
// could not tell the sandbox was lost); what the status and the restart
// policy need of their runs is carried (withCarried). It then returns
// true: the sync starts over, with the new sandbox.
func (w *podWorker) lostRuns(ctx context.Context, pd *corev1.Pod, obs map[string]*observed) (resetSandbox bool, err error) {
	var names []string
	for name, o := range obs {
		if o.current != nil && o.current.Lost && !w.emitted["lost:"+o.current.ID] {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	never := pd.Spec.RestartPolicy == corev1.RestartPolicyNever
	for _, name := range names {
		o := obs[name]
		w.emitted["lost:"+o.current.ID] = true
		reason, msg := lostReason(o.current, o.bootID)
		next := "it runs again as the pod's restartPolicy says"
		if never {
			next = "restartPolicy Never: it does not run again"
		}
		w.p.event(pd, corev1.EventTypeWarning, reason, fmt.Sprintf("Container %s: %s; %s", name, msg, next))
	}
	if !never && len(names) > 0 {
		w.sandboxLost = true
		w.p.event(pd, corev1.EventTypeNormal, "SandboxChanged", "Pod sandbox changed, it will be killed and re-created.")
	}
	if !w.sandboxLost {
		return false, nil
	}
	for name, o := range obs {
		if o.current != nil {
			w.carried[name] = carriedRun{last: o.current, attempt: o.attempt}
		}
	}
	if err := w.p.rt.RemovePod(ctx, w.plan.PodName, 0); err != nil && !errors.Is(err, podman.ErrNotFound) {
		return false, fmt.Errorf("remove the sandbox the reboot left: %w", err) // again at the next sync
	}
	w.sandboxLost = false
	w.sandbox.reset()
	return true, nil
}

// bootID is the host's boot id as last read, "" while unknown.
func (p *Pods) bootID() string {
	if info := p.rt.Info(); info != nil {
		return info.BootID
	}
	return ""
}

// withCarried adds to obs (with the host's boot id now) what the runs of a sandbox removed after a
// reboot tell (lostRuns), for each container whose runs went with it: with
// no run in the new sandbox, its newest run then stands as its current one
// (a lost run is then restarted at once, a completed one stays completed,
// as kubelet's new sandbox does not rerun an app container that succeeded
// under restartPolicy OnFailure; unlike kubelet, completed init containers
// do not run again either); once its first run in the new sandbox exists,
// that run is the previous one (lastState). Lost with rbn-kubelet's
// restart: restart counts then start again from 0.
func (w *podWorker) withCarried(obs map[string]*observed, bootID string) {
	for name, cr := range w.carried {
		switch o := obs[name]; {
		case o == nil:
			obs[name] = &observed{name: name, current: cr.last, attempt: cr.attempt, bootID: bootID}
		case o.previous == nil && o.attempt == cr.attempt+1:
			o.previous = cr.last
		}
	}
}
