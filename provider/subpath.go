package provider

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/containers/podman/v5/pkg/specgen"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// ErrSubPathOutsideVolume: a subPath resolves, through a symlink on the
// host, to a place outside its volume.
var ErrSubPathOutsideVolume = errors.New("subPath resolves outside its volume")

// ErrSubPathUnresolvable: the host could not resolve a subPath (it is
// missing, or the host's realpath is not GNU's).
var ErrSubPathUnresolvable = errors.New("subPath cannot be resolved on the host")

// subPathBind is a bind mount of spec that reaches below a volume's root:
// podman resolves its source on the host, so a symlink a container planted
// in a writable volume would make it mount any host path.
type subPathBind struct {
	mount        int // index in spec.Mounts
	base, source string
}

// subPathBinds lists c's subPath mounts as rendered in spec.
func subPathBinds(c pod.Container, plan *pod.Plan, spec *specgen.SpecGenerator, mountpoints map[string]string) []subPathBind {
	var out []subPathBind
	for _, m := range c.Mounts {
		if m.SubPath == "" {
			continue
		}
		v := planVolume(plan, m.Volume)
		if v == nil {
			continue
		}
		base := mountpoints[v.K8sName]
		if v.Kind == pod.VolumeHostPath && base == "" {
			base = v.HostPath
		}
		if base == "" {
			continue
		}
		src := path.Join(base, m.SubPath)
		for i, sm := range spec.Mounts {
			if sm.Type == "bind" && sm.Source == src && sm.Destination == m.MountPath {
				out = append(out, subPathBind{mount: i, base: base, source: src})
			}
		}
	}
	return out
}

// checkResolved applies the host's answer for binds (each base's and
// source's real path, in that order): every source must stay within its
// base, and is mounted by its real path, so that what was checked is what
// podman mounts.
func checkResolved(spec *specgen.SpecGenerator, binds []subPathBind, resolved []string) error {
	if len(resolved) != 2*len(binds) {
		return fmt.Errorf("resolving subPaths: %d paths for %d mounts", len(resolved), len(binds))
	}
	for i, b := range binds {
		base, src := resolved[2*i], resolved[2*i+1]
		if src != base && !strings.HasPrefix(src, strings.TrimSuffix(base, "/")+"/") {
			return fmt.Errorf("%s (mounted at %s) is %s on the host: %w", b.source, spec.Mounts[b.mount].Destination, src, ErrSubPathOutsideVolume)
		}
		spec.Mounts[b.mount].Source = src
	}
	return nil
}

// resolveSubPaths checks c's subPath mounts on the host just before the
// container is created, as kubelet does: a container restarting, or one
// starting after an init container, must not follow a symlink out of its
// volume. One command for all of a container's subPaths; GNU realpath
// (-z: NUL-separated, any byte in a name is safe).
//
// What is left: a container of the same pod that runs at the same time
// could swap a directory for a symlink between this check and podman's
// mount. kubelet closes that window by mounting an opened file descriptor,
// which podman's API does not offer.
func (pv *podVolumes) resolveSubPaths(ctx context.Context, plan *pod.Plan, c pod.Container, spec *specgen.SpecGenerator) error {
	binds := subPathBinds(c, plan, spec, pv.mountpoints)
	if len(binds) == 0 {
		return nil
	}
	paths := make([]string, 0, 2*len(binds))
	for _, b := range binds {
		paths = append(paths, b.base, b.source)
	}
	resolved, err := pv.rt.RealPaths(ctx, paths)
	if err != nil {
		return err
	}
	return checkResolved(spec, binds, resolved)
}
