package pod

import (
	"fmt"
	"path"

	corev1 "k8s.io/api/core/v1"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// annProvisionedBy names the provisioner that made a PersistentVolume.
const annProvisionedBy = "pv.kubernetes.io/provisioned-by"

// ReferencedClaims names the PersistentVolumeClaims of the pod's volumes,
// sorted and without duplicates: the caller fetches them, with their
// PersistentVolumes, into Input.Claims.
func ReferencedClaims(pd *corev1.Pod) []string {
	seen := map[string]bool{}
	for _, v := range pd.Spec.Volumes {
		if c := v.PersistentVolumeClaim; c != nil {
			seen[c.ClaimName] = true
		}
	}
	return sortedKeys(seen)
}

// claim translates a persistentVolumeClaim volume: its claim must be
// bound, and its PersistentVolume one a build host can mount: one of rbn's
// provisioner (below the node's volume root), or a local or hostPath
// volume inside the node's hostPathAllowlist, each bind-mounted from the
// host. Any other kind fails the pod, naming the claim and its volume.
func (t *translator) claim(field, name string, src *corev1.PersistentVolumeClaimVolumeSource) (Volume, error) {
	notReady := func(format string, a ...any) error {
		return &VolumeNotReadyError{Volume: name, Claim: src.ClaimName, Namespace: t.pod.Namespace, Detail: fmt.Sprintf(format, a...)}
	}
	c := t.in.Claims[src.ClaimName]
	switch {
	case c == nil || c.PVC == nil:
		return Volume{}, notReady("not found")
	case c.PVC.DeletionTimestamp != nil:
		return Volume{}, notReady("is being deleted")
	case c.PVC.Spec.VolumeName == "" || c.PVC.Status.Phase != corev1.ClaimBound:
		return Volume{}, notReady("is not bound")
	case c.PV == nil:
		return Volume{}, notReady("is bound to persistentvolume %q, which is not found", c.PVC.Spec.VolumeName)
	}
	pv := c.PV
	refuse := func(reason, format string, a ...any) error {
		return unsupported(field+".claimName", reason, "volume %q: claim %q is bound to PersistentVolume %q, %s",
			name, src.ClaimName, pv.Name, fmt.Sprintf(format, a...))
	}
	if pv.Spec.VolumeMode != nil && *pv.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return Volume{}, refuse(ReasonUnsupportedVolume, "a block volume: build hosts mount file system volumes only")
	}
	vol := Volume{K8sName: name, Kind: VolumeHostPath, Claim: src.ClaimName, ReadOnly: src.ReadOnly}
	allowlist, allowed := t.in.HostPathAllowlist, "the host paths this node allows (hostPathAllowlist)"
	switch {
	case pv.Annotations[annProvisionedBy] == rbnv1.ProvisionerHostLocal && pv.Spec.Local != nil:
		// Its file system is mounted at its directory before the pod's
		// sandbox is made: the directory and the file must be the
		// provisioner's, right below the node's volume root, and the
		// volume's path the data directory in it.
		allowlist, allowed = []string{t.in.VolumeRoot}, "this node's volume root (spec.volumes.root)"
		dir, image := pv.Annotations[rbnv1.AnnotationVolumeDir], pv.Annotations[rbnv1.AnnotationVolumeImage]
		if !provisionedLayout(t.in.VolumeRoot, dir, image, pv.Spec.Local.Path) {
			return Volume{}, refuse(ReasonInvalidSpec, "a volume of %s whose directory %q, file %q and path %q are not the provisioner's below %s %q",
				rbnv1.ProvisionerHostLocal, dir, image, pv.Spec.Local.Path, allowed, t.in.VolumeRoot)
		}
		vol.HostPath = pv.Spec.Local.Path
		vol.Provisioned = &ProvisionedVolume{Dir: dir, Image: image}
	case pv.Spec.Local != nil:
		vol.HostPath = pv.Spec.Local.Path
	case pv.Spec.HostPath != nil:
		vol.HostPath = pv.Spec.HostPath.Path
		if pv.Spec.HostPath.Type != nil {
			vol.HostPathType = *pv.Spec.HostPath.Type
		}
	default:
		return Volume{}, refuse(ReasonUnsupportedVolume,
			"a %s volume, which build hosts cannot mount (they mount local and hostPath volumes, and those of the %s provisioner)",
			persistentVolumeKind(&pv.Spec.PersistentVolumeSource), rbnv1.ProvisionerHostLocal)
	}
	clean, ok := HostPathAllowed(vol.HostPath, allowlist)
	if !ok {
		return Volume{}, refuse(ReasonHostPathNotAllowed, "whose path %q is outside %s %q", vol.HostPath, allowed, allowlist)
	}
	vol.HostPath = clean
	return vol, nil
}

// provisionedLayout says whether a provisioned volume's directory, file
// ("" for none) and path are internal/hostvolume's layout right below root:
// root/N, root/N.img, root/N/data, all in clean form.
func provisionedLayout(root, dir, image, p string) bool {
	if root == "" || dir == "" || path.Dir(dir) != root || path.Clean(dir) != dir {
		return false
	}
	return (image == "" || image == dir+".img") && p == dir+"/data"
}

// persistentVolumeKind names a PersistentVolume's source by its field name
// in the API (csi, rbd, nfs, ...), as volumeKind does a pod volume's.
func persistentVolumeKind(src *corev1.PersistentVolumeSource) string {
	return fieldNames(src)
}
