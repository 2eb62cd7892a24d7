package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// labelledObjects is what removeLabelled needs of a host's podman.
type labelledObjects interface {
	ListPods(ctx context.Context, labels map[string]string) ([]podman.PodSummary, error)
	RemovePod(ctx context.Context, name string, timeout time.Duration) error
	ListContainers(ctx context.Context, labels map[string]string) ([]podman.ContainerSummary, error)
	RemoveContainer(ctx context.Context, name string, force bool) error
	ListVolumes(ctx context.Context, labels map[string]string) ([]podman.Volume, error)
	RemoveVolume(ctx context.Context, name string) error
}

// removedCounts counts the podman objects a sweep removed, by kind.
type removedCounts struct{ Pods, Containers, Volumes int }

// removeLabelled removes the host's podman pods, then containers, then
// volumes that carry the labels sel and that remove approves (by their
// labels), force and without a grace period. Pods go first: removing one
// removes its containers. what names them in logs and errors ("orphaned").
// It returns what it removed, and every failure.
func removeLabelled(ctx context.Context, rt labelledObjects, sel map[string]string, remove func(labels map[string]string) bool, what string, log *slog.Logger) (removedCounts, error) {
	var errs []error
	var n removedCounts
	if pods, err := rt.ListPods(ctx, sel); err != nil {
		errs = append(errs, fmt.Errorf("list pods: %w", err))
	} else {
		for _, x := range pods {
			if remove(x.Labels) {
				log.Info("removing "+what+" podman pod", "name", x.Name)
				if err := rt.RemovePod(ctx, x.Name, 0); err != nil && !errors.Is(err, podman.ErrNotFound) {
					errs = append(errs, fmt.Errorf("%s pod %s: %w", what, x.Name, err))
				} else if err == nil {
					n.Pods++
				}
			}
		}
	}
	if ctrs, err := rt.ListContainers(ctx, sel); err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	} else {
		for _, x := range ctrs {
			if remove(x.Labels) {
				if err := rt.RemoveContainer(ctx, x.ID, true); err != nil && !errors.Is(err, podman.ErrNotFound) {
					errs = append(errs, fmt.Errorf("%s container %s: %w", what, x.Name, err))
				} else if err == nil {
					n.Containers++
				}
			}
		}
	}
	if vols, err := rt.ListVolumes(ctx, sel); err != nil {
		errs = append(errs, fmt.Errorf("list volumes: %w", err))
	} else {
		for _, x := range vols {
			if remove(x.Labels) {
				if err := rt.RemoveVolume(ctx, x.Name); err != nil && !errors.Is(err, podman.ErrNotFound) {
					errs = append(errs, fmt.Errorf("%s volume %s: %w", what, x.Name, err))
				} else if err == nil {
					n.Volumes++
				}
			}
		}
	}
	return n, errors.Join(errs...)
}

// SweepNode removes from host everything rbn made there for node: the
// podman pods, containers and volumes labelled with it. For a
// RemoteBuildNode being deleted, once its runtime has stopped: nothing
// would ever sweep them later, since the node's orphan sweep runs only
// while it is served.
func SweepNode(ctx context.Context, host *Host, node string, log *slog.Logger) error {
	return sweepNode(ctx, host.Podman(), node, log)
}

// nodeObjects is what sweepNode needs of a host's podman.
type nodeObjects interface {
	labelledObjects
	ListNetworks(ctx context.Context, labels map[string]string) ([]podman.Network, error)
	RemoveNetwork(ctx context.Context, name string) error
}

// sweepNode removes node's podman objects from rt, then its pod network,
// which no container of the node's uses any more.
func sweepNode(ctx context.Context, rt nodeObjects, node string, log *slog.Logger) error {
	sel := map[string]string{pod.LabelNode: node}
	all := func(map[string]string) bool { return true }
	if _, err := removeLabelled(ctx, rt, sel, all, "deleted node's", log); err != nil {
		return err
	}
	nets, err := rt.ListNetworks(ctx, sel)
	if err != nil {
		return fmt.Errorf("list networks: %w", err)
	}
	var errs []error
	for _, n := range nets {
		log.Info("removing deleted node's pod network", "name", n.Name, "subnet", n.Subnet)
		if err := rt.RemoveNetwork(ctx, n.Name); err != nil {
			errs = append(errs, fmt.Errorf("deleted node's network %s: %w", n.Name, err))
		}
	}
	return errors.Join(errs...)
}
