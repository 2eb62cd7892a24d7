package pod

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// volumes translates spec.volumes in pod order.
func (t *translator) volumes() ([]Volume, error) {
	var out []Volume
	for i := range t.pod.Spec.Volumes {
		v := &t.pod.Spec.Volumes[i]
		vol, err := t.volume(fmt.Sprintf("spec.volumes[%d]", i), v)
		if err != nil {
			return nil, err
		}
		out = append(out, vol)
	}
	return out, nil
}

// fillFiles writes the Files of the Files volumes (vols are in pod order).
// A missing Secret or ConfigMap is remembered while the other volumes are
// checked, so that a permanent refusal wins over a missing object.
func (t *translator) fillFiles(vols []Volume) error {
	var missing *MissingObjectError
	for i := range vols {
		if vols[i].Kind != VolumeFiles {
			continue
		}
		files, err := t.volumeFiles(i)
		var m *MissingObjectError
		switch {
		case errors.As(err, &m):
			if missing == nil {
				missing = m
			}
		case err != nil:
			return err
		}
		vols[i].Files = files
	}
	if missing != nil {
		return missing
	}
	return nil
}

// volumeFiles renders the files of the pod's i-th volume, a files volume.
func (t *translator) volumeFiles(i int) ([]File, error) {
	files, err := t.files(fmt.Sprintf("spec.volumes[%d]", i), &t.pod.Spec.Volumes[i].VolumeSource)
	if sc := t.pod.Spec.SecurityContext; sc != nil && sc.FSGroup != nil {
		// The kubelet's SetVolumeOwnership for a read-only volume:
		// readable by owner and group.
		for j := range files {
			files[j].Mode |= 0o440
		}
	}
	return files, err
}

func (t *translator) volume(field string, v *corev1.Volume) (Volume, error) {
	src := &v.VolumeSource
	switch {
	case src.EmptyDir != nil:
		return t.emptyDir(field+".emptyDir", v.Name, src.EmptyDir)
	case src.HostPath != nil:
		return t.hostPath(field+".hostPath", v.Name, src.HostPath)
	case src.PersistentVolumeClaim != nil:
		return t.claim(field+".persistentVolumeClaim", v.Name, src.PersistentVolumeClaim)
	case src.Secret != nil, src.ConfigMap != nil, src.DownwardAPI != nil, src.Projected != nil:
		// The files come later, from fillFiles.
		return Volume{K8sName: v.Name, Kind: VolumeFiles, PodmanName: VolumeName(t.pod.UID, v.Name)}, nil
	}
	kind := volumeKind(src)
	if kind == "" {
		return Volume{}, unsupported(field, ReasonUnsupportedVolume, "volume %q has no source", v.Name)
	}
	return Volume{}, unsupported(field+"."+kind, ReasonUnsupportedVolume,
		"volume %q: %s volumes are not supported on remote build nodes (supported: emptyDir, secret, configMap, downwardAPI, projected, hostPath, persistentVolumeClaim)", v.Name, kind)
}

// volumeKind names the source of a volume by its field name in the API
// (persistentVolumeClaim, csi, ...), so that the error quotes the pod spec.
// Reading it from the JSON form keeps it right for sources added to the API
// after this code was written.
func volumeKind(src *corev1.VolumeSource) string { return fieldNames(src) }

// fieldNames lists the JSON field names a struct sets, sorted and joined
// by commas.
func fieldNames(src any) string {
	raw, err := json.Marshal(src)
	if err != nil {
		return ""
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return ""
	}
	kinds := make([]string, 0, len(fields))
	for k := range fields {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	return strings.Join(kinds, ",")
}

func (t *translator) emptyDir(field, name string, src *corev1.EmptyDirVolumeSource) (Volume, error) {
	vol := Volume{K8sName: name, Kind: VolumeEmptyDir, PodmanName: VolumeName(t.pod.UID, name)}
	if src.SizeLimit != nil {
		// A tmpfs's size; on disk the pod is evicted past it, as by the
		// kubelet (provider's checkStorage).
		vol.SizeLimitBytes = src.SizeLimit.Value()
	}
	if src.Mode != nil {
		// Podman creates a volume's directory with its own mode; there is
		// no option to choose it.
		return Volume{}, unsupported(field+".mode", ReasonUnsupportedVolume, "emptyDir mode is not supported")
	}
	switch src.Medium {
	case corev1.StorageMediumDefault:
	case corev1.StorageMediumMemory:
		vol.Tmpfs = true
		vol.SizeLimitBytes = tmpfsSize(vol.SizeLimitBytes, t.pod)
	default:
		// HugePages and HugePages-<size> need hugetlbfs and a hugepage
		// reservation the build hosts do not provide.
		return Volume{}, unsupported(field+".medium", ReasonUnsupportedVolume, "emptyDir medium %q is not supported (use \"\" or \"Memory\")", src.Medium)
	}
	return vol, nil
}

// tmpfsSize bounds a memory-backed emptyDir as the kubelet does
// (calculateEmptyDirMemorySize): by the pod's memory limit when every
// container declares one, and by sizeLimit when that is smaller. Without
// either, a tmpfs would default to half the host's memory. The node's
// allocatable memory, the kubelet's last bound, is not known here.
func tmpfsSize(sizeLimit int64, pod *corev1.Pod) int64 {
	podLimit := podMemoryLimit(pod)
	switch {
	case podLimit <= 0:
		return sizeLimit
	case sizeLimit <= 0 || sizeLimit > podLimit:
		return podLimit
	default:
		return sizeLimit
	}
}

// podMemoryLimit is the pod's effective memory limit as the kubelet computes
// it for the pod cgroup: the larger of the sum over app containers and the
// largest init container (init containers run one at a time, before the app
// containers); 0 when some container has no limit, i.e. the pod is unbounded.
//
// With pod-level resources, the pod's own memory limit is that limit, as
// the kubelet's (the pod cgroup's) is.
func podMemoryLimit(pod *corev1.Pod) int64 {
	if r := pod.Spec.Resources; r != nil {
		if lim, ok := r.Limits[corev1.ResourceMemory]; ok && !lim.IsZero() {
			return lim.Value()
		}
	}
	var sum, initMax int64
	for _, c := range pod.Spec.Containers {
		lim, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || lim.IsZero() {
			return 0
		}
		sum += lim.Value()
	}
	for _, c := range pod.Spec.InitContainers {
		lim, ok := c.Resources.Limits[corev1.ResourceMemory]
		if !ok || lim.IsZero() {
			return 0
		}
		initMax = max(initMax, lim.Value())
	}
	return max(sum, initMax)
}

func (t *translator) hostPath(field, name string, src *corev1.HostPathVolumeSource) (Volume, error) {
	clean, ok := HostPathAllowed(src.Path, t.in.HostPathAllowlist)
	if !ok {
		return Volume{}, unsupported(field+".path", ReasonHostPathNotAllowed,
			"hostPath %q is outside the host paths this node allows %q", src.Path, t.in.HostPathAllowlist)
	}
	vol := Volume{K8sName: name, Kind: VolumeHostPath, HostPath: clean}
	if src.Type != nil {
		vol.HostPathType = *src.Type
	}
	switch vol.HostPathType {
	case corev1.HostPathUnset, corev1.HostPathDirectoryOrCreate, corev1.HostPathDirectory, corev1.HostPathFileOrCreate,
		corev1.HostPathFile, corev1.HostPathSocket, corev1.HostPathCharDev, corev1.HostPathBlockDev:
	default:
		return Volume{}, unsupported(field+".type", ReasonInvalidSpec, "hostPath type %q is not a type the API defines", vol.HostPathType)
	}
	return vol, nil
}
