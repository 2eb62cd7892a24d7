// Package provisioner is rbn's dynamic volume provisioner, rbn.dev/host-local:
// for a PersistentVolumeClaim of a StorageClass naming it, it makes a
// volume on the build host of the node the scheduler selected (the class
// must bind WaitForFirstConsumer), under the root that node's
// RemoteBuildNode names, and a PersistentVolume of type local with node
// affinity to that one node. It removes a volume's data from its host
// when its PersistentVolume is released under the Delete policy.
//
// sig-storage-lib-external-provisioner runs the claim and volume loops;
// this package is its Provisioner. Every replica of rbn-kubelet runs one:
// each acts only for the nodes it serves (Qualifier, DeletionGuard), since
// only the replica serving a node writes to its host.
package provisioner

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/hostvolume"
)

// Name is the provisioner's name, a StorageClass's provisioner field.
const Name = rbnv1.ProvisionerHostLocal

// The PersistentVolumes it makes say where the volume is on its host
// (rbnv1.AnnotationVolumeDir, rbnv1.AnnotationVolumeImage), so that it is
// removed where it was made whatever the node's volume root says later. (A
// pod mounts one only below the node's current root: an annotation is not
// trusted to name any other host path.)

// annSelectedNode is the scheduler's choice of node for a claim that waits
// for its first consumer.
const annSelectedNode = "volume.kubernetes.io/selected-node"

// Hosts gives the provisioner the nodes this replica serves.
type Hosts interface {
	// Served returns node's build host and its RemoteBuildNode's
	// defaulted spec, when this replica serves node.
	Served(node string) (hostvolume.Runner, *rbnv1.RemoteBuildNodeSpec, bool)
	// VolumesChanged tells that a volume was made or removed on node's
	// host: its free space changed.
	VolumesChanged(node string)
}

// Provisioner implements the library's Provisioner, Qualifier and
// DeletionGuard.
type Provisioner struct {
	hosts Hosts
	log   *slog.Logger
}

var (
	_ controller.Provisioner   = (*Provisioner)(nil)
	_ controller.Qualifier     = (*Provisioner)(nil)
	_ controller.DeletionGuard = (*Provisioner)(nil)
)

// New returns a Provisioner acting for the nodes hosts serves.
func New(hosts Hosts, log *slog.Logger) *Provisioner {
	return &Provisioner{hosts: hosts, log: log}
}

// ShouldProvision: the claim's selected node is served here, or the claim
// has none, which Provision refuses with the reason (a class binding
// Immediate), so that the claim does not wait in silence.
func (p *Provisioner) ShouldProvision(_ context.Context, claim *corev1.PersistentVolumeClaim) bool {
	node := claim.Annotations[annSelectedNode]
	if node == "" {
		return true
	}
	_, _, ok := p.hosts.Served(node)
	return ok
}

// ShouldDelete: the volume's node is served here.
func (p *Provisioner) ShouldDelete(_ context.Context, pv *corev1.PersistentVolume) bool {
	_, _, ok := p.hosts.Served(pv.Labels[rbnv1.LabelNode])
	return ok
}

// ClaimError is a claim rbn.dev/host-local cannot provision as it is
// asked: the message says what to change.
type ClaimError struct{ Reason string }

func (e *ClaimError) Error() string { return Name + ": " + e.Reason }

// NoSpaceError is a host without the free space a claim asks for: the
// claim is given back to the scheduler to pick another node.
type NoSpaceError struct {
	Node             string
	Asked, Free      int64
	Root             string
	Available, Taken int64
}

func (e *NoSpaceError) Error() string {
	return fmt.Sprintf("node %s: the claim asks for %s but the host has %s free under %s (%s available, %s of it promised to its other volumes): asking the scheduler for another node",
		e.Node, bytesString(e.Asked), bytesString(max(e.Free, 0)), e.Root, bytesString(e.Available), bytesString(e.Taken))
}

func bytesString(n int64) string { return resource.NewQuantity(n, resource.BinarySI).String() }

// Provision makes the claim's volume on its selected node's host.
func (p *Provisioner) Provision(ctx context.Context, o controller.ProvisionOptions) (*corev1.PersistentVolume, controller.ProvisioningState, error) {
	node := o.SelectedNodeName
	if node == "" {
		return nil, controller.ProvisioningFinished, &ClaimError{Reason: "no node selected: its StorageClass must have volumeBindingMode WaitForFirstConsumer, since the volume is made on the host of the node its pod is scheduled to"}
	}
	r, spec, ok := p.hosts.Served(node)
	if !ok {
		// Served here when the claim was queued, not any more.
		return nil, controller.ProvisioningNoChange, &controller.IgnoredError{Reason: "node " + node + " is not served by this replica"}
	}
	size, err := checkClaim(o)
	if err != nil {
		return nil, controller.ProvisioningFinished, err
	}
	vs := spec.Volumes
	space, err := hostvolume.ReadSpace(ctx, r, vs.Root, o.PVName)
	if err != nil {
		return nil, controller.ProvisioningNoChange, err
	}
	need := size
	if vs.SizeLimit == rbnv1.VolumeSizeLimitLoopFile {
		need = max(size, hostvolume.MinImageSize)
	}
	free := space.Free()
	if free < need {
		return nil, controller.ProvisioningReschedule, &NoSpaceError{Node: node, Asked: need, Free: free,
			Root: vs.Root, Available: space.Available, Taken: space.Promised}
	}
	v := hostvolume.Layout(vs.Root, o.PVName, vs.SizeLimit)
	err = hostvolume.Create(ctx, r, v, size)
	p.hosts.VolumesChanged(node)
	if err != nil {
		// Nothing goes on in the background: the next attempt finishes
		// what this one began.
		return nil, controller.ProvisioningFinished, err
	}
	p.log.Info("volume provisioned", "node", node, "pv", o.PVName,
		"claim", o.PVC.Namespace+"/"+o.PVC.Name, "dir", v.Dir, "bytes", size, "sizeLimit", vs.SizeLimit)
	return PersistentVolume(o, node, v), controller.ProvisioningFinished, nil
}

// checkClaim refuses what a host-local volume cannot be, and returns the
// size asked.
func checkClaim(o controller.ProvisionOptions) (int64, error) {
	for k := range o.StorageClass.Parameters {
		return 0, &ClaimError{Reason: fmt.Sprintf("StorageClass %s: unknown parameter %q (rbn.dev/host-local takes none: the node's RemoteBuildNode says where and how volumes are made)", o.StorageClass.Name, k)}
	}
	if len(o.StorageClass.MountOptions) > 0 {
		return 0, &ClaimError{Reason: fmt.Sprintf("StorageClass %s: mountOptions are not supported (the volume is bind-mounted into the pod's containers)", o.StorageClass.Name)}
	}
	c := o.PVC
	if c.Spec.DataSource != nil || c.Spec.DataSourceRef != nil {
		return 0, &ClaimError{Reason: "a claim with a dataSource cannot be provisioned: a host-local volume starts empty (no clones, no snapshots)"}
	}
	if c.Spec.Selector != nil {
		return 0, &ClaimError{Reason: "a claim with a selector cannot be provisioned: a new volume has no labels to match"}
	}
	for _, m := range c.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return 0, &ClaimError{Reason: fmt.Sprintf("access mode %s: a host-local volume is on one host, for pods of one node (ReadWriteOnce, ReadWriteOncePod)", m)}
		}
	}
	q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok || q.Sign() <= 0 {
		return 0, &ClaimError{Reason: "the claim requests no storage size"}
	}
	return q.Value(), nil
}

// PersistentVolume is the PersistentVolume of volume v on node: type local
// at v's data directory, pinned to the node by its rbn.dev/node label, with
// the claim's size and access modes and the class's reclaim policy (the library adds the claim reference, the class name and
// the provisioned-by annotation).
func PersistentVolume(o controller.ProvisionOptions, node string, v hostvolume.Volume) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        o.PVName,
			Labels:      map[string]string{rbnv1.LabelNode: node},
			Annotations: map[string]string{rbnv1.AnnotationVolumeDir: v.Dir},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: o.PVC.Spec.Resources.Requests[corev1.ResourceStorage]},
			AccessModes:                   slices.Clone(o.PVC.Spec.AccessModes),
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			VolumeMode:                    o.PVC.Spec.VolumeMode,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: v.Data()},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: rbnv1.LabelNode, Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}}}},
			}},
		},
	}
	if v.Image != "" {
		pv.Annotations[rbnv1.AnnotationVolumeImage] = v.Image
	}
	if rp := o.StorageClass.ReclaimPolicy; rp != nil {
		pv.Spec.PersistentVolumeReclaimPolicy = *rp
	}
	return pv
}

// VolumeOf is where pv's volume is on its host; false for a
// PersistentVolume this provisioner did not make.
func VolumeOf(pv *corev1.PersistentVolume) (hostvolume.Volume, bool) {
	dir := pv.Annotations[rbnv1.AnnotationVolumeDir]
	if pv.Annotations["pv.kubernetes.io/provisioned-by"] != Name || dir == "" {
		return hostvolume.Volume{}, false
	}
	return hostvolume.Volume{Dir: dir, Image: pv.Annotations[rbnv1.AnnotationVolumeImage]}, true
}

// Delete removes pv's volume, and its data, from its host. While the host
// cannot be reached this fails, and the library tries again later; the
// PersistentVolume keeps its finalizer until it succeeds.
func (p *Provisioner) Delete(ctx context.Context, pv *corev1.PersistentVolume) error {
	v, ok := VolumeOf(pv)
	if !ok {
		return &controller.IgnoredError{Reason: "not a volume of " + Name}
	}
	node := pv.Labels[rbnv1.LabelNode]
	r, _, ok := p.hosts.Served(node)
	if !ok {
		return &controller.IgnoredError{Reason: "node " + node + " is not served by this replica"}
	}
	err := hostvolume.Remove(ctx, r, v)
	p.hosts.VolumesChanged(node)
	if err != nil {
		return fmt.Errorf("node %s: %w", node, err)
	}
	p.log.Info("volume removed", "node", node, "pv", pv.Name, "dir", v.Dir)
	return nil
}
