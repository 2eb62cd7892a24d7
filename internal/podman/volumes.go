package podman

import (
	"context"
	"errors"
	"strings"

	"github.com/containers/podman/v5/libpod/define"
	"github.com/containers/podman/v5/pkg/bindings/volumes"
	entitiesTypes "github.com/containers/podman/v5/pkg/domain/entities/types"
)

var errNoImage = errors.New("registry returned no image")

// Volume is a named volume on the host.
type Volume struct {
	Name       string
	Labels     map[string]string
	Mountpoint string
}

// EnsureVolume creates a named volume unless it exists, and returns it
// (the one that exists as it is, whatever labels and options it was given).
// One call: podman answers with the volume it has of that name when asked
// to ignore one that exists (IgnoreIfExists, podman 5). One that does not
// take that option (Debian 12's podman 4.3.1) refuses the name with
// ErrVolumeExists, and the volume is inspected then: still one call for a
// new volume, the pod's start path.
func (c *Client) EnsureVolume(ctx context.Context, name string, labels, options map[string]string) (_ *Volume, err error) {
	cctx, end, err := c.call(ctx, opVolumeEnsure)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	r, err := volumes.Create(cctx, entitiesTypes.VolumeCreateOptions{Name: name, Label: labels, Options: options, IgnoreIfExists: true}, nil)
	if err != nil && strings.Contains(err.Error(), define.ErrVolumeExists.Error()) {
		r, err = volumes.Inspect(cctx, name, nil)
		if err != nil {
			return nil, wrap("inspect volume "+name, err)
		}
	}
	if err != nil {
		return nil, wrap("create volume "+name, err)
	}
	return &Volume{Name: r.Name, Labels: r.Labels, Mountpoint: r.Mountpoint}, nil
}

// ListVolumes lists volumes carrying every given label.
func (c *Client) ListVolumes(ctx context.Context, labels map[string]string) (_ []Volume, err error) {
	cctx, end, err := c.call(ctx, opVolumeList)
	if err != nil {
		return nil, err
	}
	defer end(&err)
	list, err := volumes.List(cctx, new(volumes.ListOptions).WithFilters(labelFilter(labels)))
	if err != nil {
		return nil, wrap("list volumes", err)
	}
	out := make([]Volume, 0, len(list))
	for _, v := range list {
		out = append(out, Volume{Name: v.Name, Labels: v.Labels, Mountpoint: v.Mountpoint})
	}
	return out, nil
}

// RemoveVolume removes a volume; a missing one is not an error.
func (c *Client) RemoveVolume(ctx context.Context, name string) (err error) {
	cctx, end, err := c.call(ctx, opVolumeRemove)
	if err != nil {
		return err
	}
	defer end(&err)
	err = volumes.Remove(cctx, name, new(volumes.RemoveOptions).WithForce(true))
	if err != nil && errors.Is(wrap("", err), ErrNotFound) {
		return nil
	}
	return wrap("remove volume "+name, err)
}
