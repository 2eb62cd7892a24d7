package podman

import (
	"context"
	"time"

	"github.com/containers/podman/v5/pkg/bindings/pods"
	entitiesTypes "github.com/containers/podman/v5/pkg/domain/entities/types"
	"github.com/containers/podman/v5/pkg/specgen"
)

// CreatePod creates a pod (with its infra container) from spec.
func (c *Client) CreatePod(ctx context.Context, spec *specgen.PodSpecGenerator) (_ string, err error) {
	cctx, end, err := c.call(ctx, opPodCreate)
	if err != nil {
		return "", err
	}
	defer end(&err)
	r, err := pods.CreatePodFromSpec(cctx, &entitiesTypes.PodSpec{PodSpecGen: *spec})
	if err != nil {
		return "", wrap("create pod "+spec.Name, err)
	}
	return r.Id, nil
}

// StartPod starts a pod's infra container (and any created containers: call
// it before creating the pod's own containers).
func (c *Client) StartPod(ctx context.Context, name string) (err error) {
	cctx, end, err := c.call(ctx, opPodStart)
	if err != nil {
		return err
	}
	defer end(&err)
	r, err := pods.Start(cctx, name, nil)
	if err != nil {
		return wrap("start pod "+name, err)
	}
	for _, e := range r.Errs {
		return wrap("start pod "+name, e)
	}
	return nil
}

// PodSummary is a pod as listed.
type PodSummary struct {
	ID     string
	Name   string
	Labels map[string]string
	Status string
	// InfraID is the infra container's ID.
	InfraID string
}

// InspectPod returns a pod's summary.
func (c *Client) InspectPod(ctx context.Context, name string) (_ *PodSummary, err error) {
	cctx, end, err := c.call(ctx, opPodInspect)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	r, err := pods.Inspect(cctx, name, nil)
	if err != nil {
		return nil, wrap("inspect pod "+name, err)
	}
	return &PodSummary{ID: r.ID, Name: r.Name, Labels: r.Labels, Status: r.State, InfraID: r.InfraContainerID}, nil
}

// ListPods lists pods carrying every given label.
func (c *Client) ListPods(ctx context.Context, labels map[string]string) (_ []PodSummary, err error) {
	cctx, end, err := c.call(ctx, opPodList)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	list, err := pods.List(cctx, new(pods.ListOptions).WithFilters(labelFilter(labels)))
	if err != nil {
		return nil, wrap("list pods", err)
	}
	out := make([]PodSummary, 0, len(list))
	for _, p := range list {
		out = append(out, PodSummary{ID: p.Id, Name: p.Name, Labels: p.Labels, Status: p.Status, InfraID: p.InfraId})
	}
	return out, nil
}

// RemovePod force-removes a pod and its containers; containers still
// running get the stop signal and SIGKILL after timeout.
func (c *Client) RemovePod(ctx context.Context, name string, timeout time.Duration) (err error) {
	cctx, end, err := c.callWithin(ctx, opPodRemove, c.cfg.RequestTimeout+max(timeout, 0))
	if err != nil {
		return err
	}
	defer end(&err)
	r, err := pods.Remove(cctx, name, new(pods.RemoveOptions).WithForce(true).WithTimeout(uint(timeout/time.Second)))
	if err != nil {
		return wrap("remove pod "+name, err)
	}
	if r != nil && r.Err != nil {
		return wrap("remove pod "+name, r.Err)
	}
	return nil
}
