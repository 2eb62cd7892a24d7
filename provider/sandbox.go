package provider

import (
	"context"
	"errors"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// sandbox is a pod's podman pod and its infra container, which holds the
// pod's network namespace and IP.
type sandbox struct {
	rt podRuntime

	id        string // the podman pod's ID, once created or found
	infraName string
	ip        string // the infra container's, once it runs
	// ready: the podman pod is set up, volumes filled and inputs staged;
	// its containers can be created.
	ready bool
	// pending is the infra container's start, under way while the first
	// container is created (see startAsync).
	pending *pendingSandbox
}

// pendingSandbox is the start of a new podman pod's infra container, under
// way while its first container is created.
type pendingSandbox struct {
	done  chan struct{}
	infra *podman.ContainerState
	err   error
}

// create creates the podman pod, or finds the one an earlier attempt (or
// rbn-kubelet before a restart) created. fresh tells that it created it,
// so that it holds no container of the pod's yet.
func (s *sandbox) create(ctx context.Context, plan *pod.Plan) (fresh bool, err error) {
	// Create first: a pod that exists already is a conflict, and a new one
	// costs no lookup.
	id, err := s.rt.CreatePod(ctx, pod.PodSpec(plan))
	switch {
	case err == nil:
		s.id, s.infraName = id, plan.InfraName()
		return true, nil
	case !errors.Is(err, podman.ErrConflict):
		return false, err
	}
	// Its infra container may predate deterministic infra names.
	info, err := s.rt.InspectPod(ctx, plan.PodName)
	if err != nil {
		return false, err
	}
	s.id, s.infraName = info.ID, info.InfraID
	return false, nil
}

// start starts the infra container alone and returns its state: starting
// the podman pod would also start every container of it that has exited,
// and a re-adopted pod's completed containers must not run again.
func (s *sandbox) start(ctx context.Context) (*podman.ContainerState, error) {
	if err := s.rt.StartContainer(ctx, s.infraName); err != nil {
		return nil, err
	}
	infra, err := s.rt.InspectContainer(ctx, s.infraName)
	if err != nil {
		return nil, err
	}
	s.ip = infra.IPAddress
	return infra, nil
}

// startAsync starts the infra container while the first container is
// created; await waits for it. The sandbox counts as ready meanwhile.
func (s *sandbox) startAsync(ctx context.Context) {
	sb := &pendingSandbox{done: make(chan struct{})}
	s.pending, s.ready = sb, true
	rt, name := s.rt, s.infraName
	go func() {
		defer close(sb.done)
		if sb.err = rt.StartContainer(ctx, name); sb.err == nil {
			sb.infra, sb.err = rt.InspectContainer(ctx, name)
		}
	}()
}

// await waits for the infra container's start begun by startAsync, if
// any, and returns how it went; again the same until settle.
func (s *sandbox) await() error {
	sb := s.pending
	if sb == nil {
		return nil
	}
	<-sb.done
	if sb.err == nil {
		s.ip = sb.infra.IPAddress
	}
	return sb.err
}

// settle ends the sync's wait for the infra container: when its start
// failed, the sandbox is set up again at the next sync, as one found
// existing.
func (s *sandbox) settle() error {
	err := s.await()
	s.pending = nil
	if err != nil {
		s.reset()
	}
	return err
}

// reset forgets the podman pod: the next sync sets it up again.
func (s *sandbox) reset() {
	s.id, s.infraName, s.ready, s.pending = "", "", false, nil
}

// setUpSandbox creates the pod's volumes and podman pod, starts its infra
// container, fills the volumes that must be written before any container
// is created and stages the pod's inputs. fresh tells that it created the
// podman pod, which therefore holds no container of the pod's yet. When
// nothing must happen between the infra container's start and the first
// container's creation, the infra container starts while that container is
// created (runContainer waits for it before starting one).
func (w *podWorker) setUpSandbox(ctx context.Context) (fresh bool, err error) {
	if err := w.volumes.create(ctx, w.plan, w.p.cfg.Spec.HostPathAllowlist, volumeRoot(w.p.cfg.Spec)); err != nil {
		return false, err
	}
	if err := w.p.net.ensure(ctx, w.p.rt); err != nil {
		return false, err
	}
	if fresh, err = w.sandbox.create(ctx, w.plan); err != nil {
		w.p.net.recheck() // in case someone removed it on the host
		return false, err
	}
	if fresh {
		w.acts.add(w.sandbox.infraName, actStarted) // now or while the first container is created
		w.volumes.fillOnHost(ctx, w.plan, w.log)
	}
	if fresh && !needsInfraFirst(w.plan) {
		w.sandbox.startAsync(ctx)
		return true, nil
	}
	infra, err := w.sandbox.start(ctx)
	if err != nil {
		return false, err
	}
	if err := w.volumes.fillLoaded(ctx, w.plan, infra.ImageID); err != nil {
		return false, err
	}
	if err := w.startServices(ctx, infra.ImageID); err != nil {
		return false, err
	}
	if need, err := w.transfers.inputsNeeded(ctx, w.plan, fresh); err != nil {
		return false, err
	} else if need {
		if err := w.transfers.stage(ctx, w.current(), w.plan, infra.ImageID); err != nil {
			return false, err
		}
	}
	w.sandbox.ready = true
	return fresh, nil
}

// needsInfraFirst says whether something must happen between the infra
// container's start and the first container's creation: env that names the
// pod's IP, volume files written through a loader container (which runs the
// infra image), the cluster Services' forwarder (which runs in the infra
// container's network namespace), inputs to stage.
func needsInfraFirst(plan *pod.Plan) bool {
	return plan.UsesPodIP || len(loaderVolumes(plan)) > 0 || len(plan.ClusterServices) > 0 ||
		plan.Transfers != nil && len(plan.Transfers.Inputs) > 0
}
