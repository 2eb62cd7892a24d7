package provider

import (
	"context"
	"errors"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// ensureSandbox creates the pod's volumes and podman pod and fills its file
// volumes. fresh tells that it created the podman pod, which therefore holds
// no container of the pod's yet.
func (w *podWorker) ensureSandbox(ctx context.Context) (fresh bool, err error) {
	pc := w.p.rt
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
