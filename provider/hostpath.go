package provider

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/hostvolume"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// HostPathTypeError is a hostPath volume whose path on the host does not
// have the type the pod asks for (or could not be created): the kubelet's
// "hostPath type check failed", retried at the next sync as the kubelet
// retries a mount, since someone may fix the host.
type HostPathTypeError struct {
	Volume, Path string
	Type         corev1.HostPathType
	// Detail is what the host said, when it said something.
	Detail string
}

func (e *HostPathTypeError) Error() string {
	msg := fmt.Sprintf("volume %q: hostPath type check failed: %s is not %s", e.Volume, e.Path, hostPathTypeNoun[e.Type])
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// HostPathEscapeError is a hostPath volume whose path leads, through a
// symlink on the host, outside the node's hostPathAllowlist: the
// translation's check of the path as written is lexical, and a bind mount
// follows symlinks.
type HostPathEscapeError struct {
	Volume, Path, Resolved string
	// Provisioned: the volume is a claim's provisioned volume, which must
	// lie below the node's volume root.
	Provisioned bool
}

func (e *HostPathEscapeError) Error() string {
	if e.Provisioned {
		return fmt.Sprintf("volume %q: %s resolves on the host to %s, outside this node's volume root (spec.volumes.root, resolved on the host too)",
			e.Volume, e.Path, e.Resolved)
	}
	return fmt.Sprintf("volume %q: hostPath %s resolves on the host to %s, outside the host paths this node allows (hostPathAllowlist, resolved on the host too)",
		e.Volume, e.Path, e.Resolved)
}

// resolveHostPaths resolves the plan's hostPath volumes and the allowlist
// on the host, with one command for all, and refuses a volume whose real
// path is not at or below an entry's real path. It returns each volume's
// real path, by Kubernetes volume name: what is mounted, so that a symlink
// swapped in after this check does not redirect the mount. (A process on
// the host, or a pod with the parent directory mounted, could still swap
// a directory of that real path between this check and podman's mount, as
// for subPaths; podman's API cannot mount an opened file descriptor.)
//
// A provisioned volume (of a claim) is checked against the node's volume
// root instead, resolved the same way.
func resolveHostPaths(ctx context.Context, rt podRuntime, plan *pod.Plan, allowlist []string, volumeRoot string) (map[string]string, error) {
	var vols []pod.Volume
	for _, v := range plan.Volumes {
		if v.Kind == pod.VolumeHostPath {
			vols = append(vols, v)
		}
	}
	if len(vols) == 0 {
		return nil, nil
	}
	paths := make([]string, 0, len(vols)+len(allowlist)+1)
	for _, v := range vols {
		paths = append(paths, v.HostPath)
	}
	paths = append(paths, volumeRoot)
	paths = append(paths, allowlist...)
	resolved, err := rt.CanonicalPaths(ctx, paths)
	if err != nil {
		return nil, fmt.Errorf("resolving hostPath volumes on the host: %w", err)
	}
	if len(resolved) != len(paths) {
		return nil, fmt.Errorf("resolving hostPath volumes on the host: %d paths for %d asked", len(resolved), len(paths))
	}
	realRoot, realAllowlist := resolved[len(vols):len(vols)+1], resolved[len(vols)+1:]
	real := make(map[string]string, len(vols))
	for i, v := range vols {
		within := realAllowlist
		if v.Provisioned != nil {
			within = realRoot
		}
		if _, ok := pod.HostPathAllowed(resolved[i], within); !ok {
			return nil, &HostPathEscapeError{Volume: v.K8sName, Path: v.HostPath, Resolved: resolved[i], Provisioned: v.Provisioned != nil}
		}
		real[v.K8sName] = resolved[i]
	}
	return real, nil
}

// mountProvisioned mounts the file system of each of the plan's
// provisioned volumes where it is not mounted (a host loses its mounts
// when it reboots): until then the volume's data directory, which is
// inside that file system, does not exist.
func mountProvisioned(ctx context.Context, rt podRuntime, plan *pod.Plan) error {
	for _, v := range plan.Volumes {
		if p := v.Provisioned; p != nil {
			if err := rt.MountVolume(ctx, hostvolume.Volume{Dir: p.Dir, Image: p.Image}); err != nil {
				return &VolumeMountError{Volume: v.K8sName, Claim: v.Claim, Err: err}
			}
		}
	}
	return nil
}

// VolumeMountError is a claim's provisioned volume whose file system could
// not be mounted on the host: the kubelet's FailedMount, retried.
type VolumeMountError struct {
	Volume, Claim string
	Err           error
}

func (e *VolumeMountError) Error() string {
	return fmt.Sprintf("volume %q: mounting the volume of claim %q: %v", e.Volume, e.Claim, e.Err)
}
func (e *VolumeMountError) Unwrap() error { return e.Err }

// volumeRoot is the node's root of provisioned volumes.
func volumeRoot(spec *rbnv1.RemoteBuildNodeSpec) string {
	if spec == nil || spec.Volumes == nil || spec.Volumes.Root == "" {
		return rbnv1.DefaultVolumeRoot
	}
	return spec.Volumes.Root
}

// hostPathTypeNoun names what each type wants, as the kubelet's messages do.
var hostPathTypeNoun = map[corev1.HostPathType]string{
	corev1.HostPathDirectoryOrCreate: "a directory",
	corev1.HostPathDirectory:         "a directory",
	corev1.HostPathFileOrCreate:      "a file",
	corev1.HostPathFile:              "a file",
	corev1.HostPathSocket:            "a socket file",
	corev1.HostPathCharDev:           "a character device",
	corev1.HostPathBlockDev:          "a block device",
}

// hostPathTypeOf maps GNU stat's %F to the hostPath type a file has; ""
// for a kind no type accepts (a fifo), as for the kubelet.
func hostPathTypeOf(kind string) corev1.HostPathType {
	switch kind {
	case "directory":
		return corev1.HostPathDirectory
	case "regular file", "regular empty file":
		return corev1.HostPathFile
	case "socket":
		return corev1.HostPathSocket
	case "character special file":
		return corev1.HostPathCharDev
	case "block special file":
		return corev1.HostPathBlockDev
	}
	return ""
}

// checkHostPaths checks the plan's typed hostPath volumes on the host, as
// the kubelet's hostPath plugin does before mounting: DirectoryOrCreate and
// FileOrCreate create a missing path (a directory with its parents; a file
// in such a directory), and every type then requires the path to be what it
// names. An empty type checks nothing: the path is bind-mounted as it is.
func checkHostPaths(ctx context.Context, rt podRuntime, plan *pod.Plan) error {
	for _, v := range plan.Volumes {
		if v.Kind != pod.VolumeHostPath || v.HostPathType == corev1.HostPathUnset {
			continue
		}
		if err := checkHostPath(ctx, rt, v); err != nil {
			return err
		}
	}
	return nil
}

func checkHostPath(ctx context.Context, rt podRuntime, v pod.Volume) error {
	fail := func(err error) error {
		e := &HostPathTypeError{Volume: v.K8sName, Path: v.HostPath, Type: v.HostPathType}
		if err != nil {
			e.Detail = err.Error()
		}
		return e
	}
	kind, err := rt.FileType(ctx, v.HostPath)
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	want := v.HostPathType
	switch want {
	case corev1.HostPathDirectoryOrCreate, corev1.HostPathFileOrCreate:
		dir := want == corev1.HostPathDirectoryOrCreate
		if err != nil {
			// Missing, most likely; if not, creating says why.
			if err := rt.MakePath(ctx, v.HostPath, dir); err != nil {
				return fail(err)
			}
			if kind, err = rt.FileType(ctx, v.HostPath); err != nil {
				return fail(err)
			}
		}
		want = corev1.HostPathFile
		if dir {
			want = corev1.HostPathDirectory
		}
	case corev1.HostPathDirectory, corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev:
		if err != nil {
			return fail(err)
		}
	default:
		return fail(fmt.Errorf("unknown hostPath type %q", want))
	}
	if hostPathTypeOf(kind) != want {
		return fail(fmt.Errorf("it is a %s", kind))
	}
	return nil
}
