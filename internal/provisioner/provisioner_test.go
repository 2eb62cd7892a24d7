package provisioner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/hostvolume"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// fakeRunner is a build host: which paths exist, how many file systems are
// mounted on each directory, what stat -f and find print. It records every
// argv.
type fakeRunner struct {
	t       *testing.T
	paths   map[string]bool
	mounts  map[string]int
	statOut string
	findOut string
	// fail, when it returns an error for an argv, makes that command fail.
	fail  func(argv []string) error
	calls [][]string
	// changed counts the provisioner's VolumesChanged of this host's node.
	changed int
}

func newFakeRunner(t *testing.T, statOut, findOut string) *fakeRunner {
	return &fakeRunner{t: t, paths: map[string]bool{}, mounts: map[string]int{}, statOut: statOut, findOut: findOut}
}

func exitErr(status int, stderr string, argv []string) error {
	return &sshconn.ExitError{Argv: slices.Clone(argv), Status: status, Stderr: stderr}
}

func failOn(name string, status int, stderr string) func([]string) error {
	return func(argv []string) error {
		if argv[0] == name {
			return exitErr(status, stderr, argv)
		}
		return nil
	}
}

// operands are the arguments after "--".
func (r *fakeRunner) operands(argv []string) []string {
	i := slices.Index(argv, "--")
	if i < 0 {
		r.t.Errorf("%q: no -- before its operands", argv)
		return nil
	}
	return argv[i+1:]
}

func (r *fakeRunner) Output(_ context.Context, argv ...string) ([]byte, error) {
	r.calls = append(r.calls, slices.Clone(argv))
	if r.fail != nil {
		if err := r.fail(argv); err != nil {
			return nil, err
		}
	}
	switch argv[0] {
	case "test":
		if r.paths[argv[len(argv)-1]] {
			return nil, nil
		}
		return nil, exitErr(1, "", argv)
	case "findmnt":
		if r.mounts[argv[len(argv)-1]] > 0 {
			return []byte(argv[len(argv)-1] + "\n"), nil
		}
		return nil, exitErr(1, "", argv)
	case "mkdir", "install", "truncate", "mkfs.ext4":
		for _, p := range r.operands(argv) {
			r.paths[p] = true
		}
		return nil, nil
	case "mv":
		ops := r.operands(argv)
		delete(r.paths, ops[0])
		r.paths[ops[1]] = true
		return nil, nil
	case "mount":
		ops := r.operands(argv)
		r.mounts[ops[1]]++
		return nil, nil
	case "umount":
		ops := r.operands(argv)
		if r.mounts[ops[0]] == 0 {
			return nil, exitErr(32, "umount: not mounted", argv)
		}
		r.mounts[ops[0]]--
		return nil, nil
	case "rm":
		for _, p := range r.operands(argv) {
			for q := range r.paths {
				if q == p || strings.HasPrefix(q, p+"/") {
					delete(r.paths, q)
				}
			}
		}
		return nil, nil
	case "stat":
		return []byte(r.statOut), nil
	case "find":
		return []byte(r.findOut), nil
	}
	r.t.Errorf("unexpected command %q", argv)
	return nil, exitErr(127, "unexpected command", argv)
}

func (r *fakeRunner) ran(name string) [][]string {
	var out [][]string
	for _, c := range r.calls {
		if c[0] == name {
			out = append(out, c)
		}
	}
	return out
}

type served struct {
	r    *fakeRunner
	spec *rbnv1.RemoteBuildNodeSpec
}

// fakeHosts serves the nodes in its map.
type fakeHosts map[string]served

// VolumesChanged counts the provisioner's calls in the node's runner.
func (h fakeHosts) VolumesChanged(node string) {
	if s, ok := h[node]; ok {
		s.r.changed++
	}
}

func (h fakeHosts) Served(node string) (hostvolume.Runner, *rbnv1.RemoteBuildNodeSpec, bool) {
	s, ok := h[node]
	if !ok {
		return nil, nil, false
	}
	return s.r, s.spec, true
}

const (
	gib     = int64(1) << 30
	mib     = int64(1) << 20
	node    = "build-1"
	pvName  = "pvc-0b5e1c2d"
	root    = "/srv/rbn-volumes"
	classNm = "rbn-local"
)

// statFree is stat -f's output for a file system with n bytes available.
func statFree(n int64) string {
	if n%4096 != 0 {
		return fmt.Sprintf("%d %d 1\n", 2*n, n)
	}
	return fmt.Sprintf("%d %d 4096\n", 2*n/4096, n/4096)
}

func newProvisioner(hosts Hosts) *Provisioner {
	return New(hosts, slog.New(slog.DiscardHandler))
}

func spec(limit rbnv1.VolumeSizeLimit) *rbnv1.RemoteBuildNodeSpec {
	return rbnv1.Default(&rbnv1.RemoteBuildNodeSpec{Volumes: &rbnv1.VolumesSpec{Root: root, SizeLimit: limit}})
}

// hostsWith serves node with a host of avail bytes available.
func hostsWith(t *testing.T, limit rbnv1.VolumeSizeLimit, avail int64, findOut string) (fakeHosts, *fakeRunner) {
	r := newFakeRunner(t, statFree(avail), findOut)
	return fakeHosts{node: {r: r, spec: spec(limit)}}, r
}

func options(size string) controller.ProvisionOptions {
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: "cache", Namespace: "builds",
			Annotations: map[string]string{annSelectedNode: node},
		},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: new(classNm),
		},
	}
	if size != "" {
		claim.Spec.Resources.Requests = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)}
	}
	return controller.ProvisionOptions{
		StorageClass: &storagev1.StorageClass{
			ObjectMeta:  metav1.ObjectMeta{Name: classNm},
			Provisioner: Name,
		},
		PVName:           pvName,
		PVC:              claim,
		SelectedNodeName: node,
	}
}

func TestShouldProvisionAndDelete(t *testing.T) {
	hosts, _ := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
	p := newProvisioner(hosts)
	// A claim with no selected node is taken (Provision refuses it, saying
	// why); a volume with no node is not.
	for _, tc := range []struct {
		name        string
		labels      map[string]string // the claim's annotations, the volume's labels
		want        bool
		wantNoClaim bool // ShouldProvision's answer differs: true
	}{
		{"served node", map[string]string{"x": "y", "k": node}, true, false},
		{"other node", map[string]string{"k": "build-2"}, false, false},
		{"none", map[string]string{}, false, true},
		{"nil", nil, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claim := &corev1.PersistentVolumeClaim{}
			pv := &corev1.PersistentVolume{}
			if tc.labels != nil {
				claim.Annotations = map[string]string{}
				pv.Labels = map[string]string{}
				for k, v := range tc.labels {
					if k == "k" {
						claim.Annotations[annSelectedNode] = v
						pv.Labels[rbnv1.LabelNode] = v
					} else {
						claim.Annotations[k] = v
						pv.Labels[k] = v
					}
				}
			}
			if got := p.ShouldProvision(t.Context(), claim); got != (tc.want || tc.wantNoClaim) {
				t.Errorf("ShouldProvision(annotations %v) = %v, want %v", claim.Annotations, got, tc.want || tc.wantNoClaim)
			}
			if got := p.ShouldDelete(t.Context(), pv); got != tc.want {
				t.Errorf("ShouldDelete(labels %v) = %v, want %v", pv.Labels, got, tc.want)
			}
		})
	}
	// The node is a label of the volume, not an annotation, and an
	// annotation of the claim, not a label.
	claim := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{
		Labels: map[string]string{annSelectedNode: node}, Annotations: map[string]string{annSelectedNode: "build-2"}}}
	if p.ShouldProvision(t.Context(), claim) {
		t.Errorf("ShouldProvision of a claim with the node as a label = true")
	}
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{rbnv1.LabelNode: node}}}
	if p.ShouldDelete(t.Context(), pv) {
		t.Errorf("ShouldDelete of a volume with the node as an annotation = true")
	}
}

func TestProvisionRefused(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(o *controller.ProvisionOptions)
		wantState controller.ProvisioningState
		ignored   bool   // *controller.IgnoredError rather than *ClaimError
		wantMsg   string // part of the error message
	}{
		{
			name:      "no selected node",
			change:    func(o *controller.ProvisionOptions) { o.SelectedNodeName = "" },
			wantState: controller.ProvisioningFinished,
			wantMsg:   "WaitForFirstConsumer",
		},
		{
			name:      "node not served",
			change:    func(o *controller.ProvisionOptions) { o.SelectedNodeName = "build-2" },
			wantState: controller.ProvisioningNoChange,
			ignored:   true,
			wantMsg:   "build-2",
		},
		{
			name: "dataSource",
			change: func(o *controller.ProvisionOptions) {
				o.PVC.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "source"}
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "dataSource",
		},
		{
			name: "dataSourceRef",
			change: func(o *controller.ProvisionOptions) {
				o.PVC.Spec.DataSourceRef = &corev1.TypedObjectReference{Kind: "VolumeSnapshot", Name: "snap"}
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "dataSource",
		},
		{
			name: "selector",
			change: func(o *controller.ProvisionOptions) {
				o.PVC.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "selector",
		},
		{
			name: "ReadWriteMany",
			change: func(o *controller.ProvisionOptions) {
				o.PVC.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadWriteMany}
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "access mode ReadWriteMany",
		},
		{
			name: "ReadOnlyMany",
			change: func(o *controller.ProvisionOptions) {
				o.PVC.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "access mode ReadOnlyMany",
		},
		{
			name:      "no storage request",
			change:    func(o *controller.ProvisionOptions) { o.PVC.Spec.Resources.Requests = nil },
			wantState: controller.ProvisioningFinished,
			wantMsg:   "requests no storage size",
		},
		{
			name: "zero storage request",
			change: func(o *controller.ProvisionOptions) {
				o.PVC.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("0")
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "requests no storage size",
		},
		{
			name: "only a limit",
			change: func(o *controller.ProvisionOptions) {
				o.PVC.Spec.Resources.Limits = o.PVC.Spec.Resources.Requests
				o.PVC.Spec.Resources.Requests = nil
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "requests no storage size",
		},
		{
			name: "class parameters",
			change: func(o *controller.ProvisionOptions) {
				o.StorageClass.Parameters = map[string]string{"fsType": "xfs"}
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   `StorageClass ` + classNm + `: unknown parameter "fsType"`,
		},
		{
			name: "class mountOptions",
			change: func(o *controller.ProvisionOptions) {
				o.StorageClass.MountOptions = []string{"noatime"}
			},
			wantState: controller.ProvisioningFinished,
			wantMsg:   "StorageClass " + classNm + ": mountOptions are not supported",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, r := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
			p := newProvisioner(hosts)
			o := options("1Gi")
			tc.change(&o)
			pv, state, err := p.Provision(t.Context(), o)
			if pv != nil {
				t.Errorf("Provision returned a volume: %+v", pv)
			}
			if state != tc.wantState {
				t.Errorf("state %q, want %q", state, tc.wantState)
			}
			if tc.ignored {
				var ierr *controller.IgnoredError
				if !errors.As(err, &ierr) {
					t.Fatalf("Provision: %v (%T), want a *controller.IgnoredError", err, err)
				}
			} else {
				var cerr *ClaimError
				if !errors.As(err, &cerr) {
					t.Fatalf("Provision: %v (%T), want a *ClaimError", err, err)
				}
				if !strings.HasPrefix(err.Error(), Name+": ") {
					t.Errorf("error %q does not start with %q", err, Name+": ")
				}
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			if len(r.calls) != 0 {
				t.Errorf("ran commands on the host: %q", r.calls)
			}
		})
	}
}

func TestProvisionAccessModesAccepted(t *testing.T) {
	for _, modes := range [][]corev1.PersistentVolumeAccessMode{
		{corev1.ReadWriteOnce},
		{corev1.ReadWriteOncePod},
		{corev1.ReadWriteOnce, corev1.ReadWriteOncePod},
	} {
		hosts, _ := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
		o := options("1Gi")
		o.PVC.Spec.AccessModes = modes
		pv, _, err := newProvisioner(hosts).Provision(t.Context(), o)
		if err != nil {
			t.Fatalf("Provision with access modes %v: %v", modes, err)
		}
		if !reflect.DeepEqual(pv.Spec.AccessModes, modes) {
			t.Errorf("access modes %v, want %v", pv.Spec.AccessModes, modes)
		}
	}
}

func TestProvisionNoSpace(t *testing.T) {
	for _, tc := range []struct {
		name    string
		limit   rbnv1.VolumeSizeLimit
		size    string
		avail   int64
		findOut string
		want    NoSpaceError
		wantMsg string
	}{
		{
			name: "loop file", limit: rbnv1.VolumeSizeLimitLoopFile, size: "10Gi", avail: 4 * gib,
			want:    NoSpaceError{Node: node, Asked: 10 * gib, Free: 4 * gib, Root: root, Available: 4 * gib},
			wantMsg: "node build-1: the claim asks for 10Gi but the host has 4Gi free under /srv/rbn-volumes (4Gi available, 0 of it promised to its other volumes): asking the scheduler for another node",
		},
		{
			name: "promised to other volumes", limit: rbnv1.VolumeSizeLimitLoopFile, size: "10Gi", avail: 20 * gib,
			// A 16 GiB image holding 1 GiB, a 1 GiB one full.
			findOut: fmt.Sprintf("%d %d pvc-a.img\n%d %d pvc-b.img\n", 16*gib, gib/512, gib, gib/512),
			want:    NoSpaceError{Node: node, Asked: 10 * gib, Free: 5 * gib, Root: root, Available: 20 * gib, Taken: 15 * gib},
			wantMsg: "node build-1: the claim asks for 10Gi but the host has 5Gi free under /srv/rbn-volumes (20Gi available, 15Gi of it promised to its other volumes)",
		},
		{
			name: "promised beyond available", limit: rbnv1.VolumeSizeLimitLoopFile, size: "1Gi", avail: 2 * gib,
			findOut: fmt.Sprintf("%d 0 pvc-a.img\n", 3*gib),
			want:    NoSpaceError{Node: node, Asked: gib, Free: -gib, Root: root, Available: 2 * gib, Taken: 3 * gib},
			wantMsg: "the claim asks for 1Gi but the host has 0 free under /srv/rbn-volumes (2Gi available, 3Gi of it promised",
		},
		{
			name: "small loop file needs the minimum image", limit: rbnv1.VolumeSizeLimitLoopFile, size: "1Mi", avail: 10 * mib,
			want:    NoSpaceError{Node: node, Asked: hostvolume.MinImageSize, Free: 10 * mib, Root: root, Available: 10 * mib},
			wantMsg: "the claim asks for 16Mi but the host has 10Mi free",
		},
		{
			name: "plain directory", limit: rbnv1.VolumeSizeLimitNone, size: "10Gi", avail: 4 * gib,
			want:    NoSpaceError{Node: node, Asked: 10 * gib, Free: 4 * gib, Root: root, Available: 4 * gib},
			wantMsg: "the claim asks for 10Gi but the host has 4Gi free",
		},
		{
			name: "one byte short", limit: rbnv1.VolumeSizeLimitNone, size: "1Gi", avail: gib - 1,
			want: NoSpaceError{Node: node, Asked: gib, Free: gib - 1, Root: root, Available: gib - 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, r := hostsWith(t, tc.limit, tc.avail, tc.findOut)
			pv, state, err := newProvisioner(hosts).Provision(t.Context(), options(tc.size))
			if pv != nil {
				t.Errorf("Provision returned a volume: %+v", pv)
			}
			if state != controller.ProvisioningReschedule {
				t.Errorf("state %q, want %q", state, controller.ProvisioningReschedule)
			}
			var nerr *NoSpaceError
			if !errors.As(err, &nerr) {
				t.Fatalf("Provision: %v (%T), want a *NoSpaceError", err, err)
			}
			if *nerr != tc.want {
				t.Errorf("NoSpaceError %+v, want %+v", *nerr, tc.want)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
			for _, want := range []string{node, root} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
			for _, c := range r.calls {
				if c[0] != "mkdir" && c[0] != "stat" && c[0] != "find" {
					t.Errorf("ran %q although there is no space", c)
				}
			}
		})
	}
}

// Free space exactly the size, and, for a plain directory, a size below
// hostvolume.MinImageSize in less than MinImageSize, is enough.
func TestProvisionJustEnoughSpace(t *testing.T) {
	for _, tc := range []struct {
		limit rbnv1.VolumeSizeLimit
		size  string
		avail int64
	}{
		{rbnv1.VolumeSizeLimitLoopFile, "1Gi", gib},
		{rbnv1.VolumeSizeLimitLoopFile, "1Mi", hostvolume.MinImageSize},
		{rbnv1.VolumeSizeLimitNone, "1Gi", gib},
		{rbnv1.VolumeSizeLimitNone, "1Mi", mib},
	} {
		hosts, _ := hostsWith(t, tc.limit, tc.avail, "")
		if _, _, err := newProvisioner(hosts).Provision(t.Context(), options(tc.size)); err != nil {
			t.Errorf("%s volume of %s with %d bytes free: %v", tc.limit, tc.size, tc.avail, err)
		}
	}
}

func wantPV(limit rbnv1.VolumeSizeLimit, size string, policy corev1.PersistentVolumeReclaimPolicy) *corev1.PersistentVolume {
	dir := root + "/" + pvName
	ann := map[string]string{rbnv1.AnnotationVolumeDir: dir}
	if limit == rbnv1.VolumeSizeLimitLoopFile {
		ann[rbnv1.AnnotationVolumeImage] = dir + ".img"
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        pvName,
			Labels:      map[string]string{rbnv1.LabelNode: node},
			Annotations: ann,
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: policy,
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				Local: &corev1.LocalVolumeSource{Path: dir + "/data"},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: rbnv1.LabelNode, Operator: corev1.NodeSelectorOpIn, Values: []string{node},
				}}}},
			}},
		},
	}
}

func TestProvision(t *testing.T) {
	retain := corev1.PersistentVolumeReclaimRetain
	del := corev1.PersistentVolumeReclaimDelete
	dir := root + "/" + pvName
	for _, tc := range []struct {
		name        string
		limit       rbnv1.VolumeSizeLimit
		size        string
		policy      *corev1.PersistentVolumeReclaimPolicy
		wantPolicy  corev1.PersistentVolumeReclaimPolicy
		wantImgSize int64 // truncate's size; 0: no image
	}{
		{"loop file", rbnv1.VolumeSizeLimitLoopFile, "10Gi", nil, del, 10 * gib},
		{"loop file, class Retain", rbnv1.VolumeSizeLimitLoopFile, "10Gi", &retain, retain, 10 * gib},
		{"loop file, class Delete", rbnv1.VolumeSizeLimitLoopFile, "10Gi", &del, del, 10 * gib},
		{"small loop file", rbnv1.VolumeSizeLimitLoopFile, "1Mi", nil, del, hostvolume.MinImageSize},
		{"decimal size", rbnv1.VolumeSizeLimitLoopFile, "5G", nil, del, 5_000_000_000},
		{"plain directory", rbnv1.VolumeSizeLimitNone, "10Gi", nil, del, 0},
		{"plain directory, class Retain", rbnv1.VolumeSizeLimitNone, "1Mi", &retain, retain, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, r := hostsWith(t, tc.limit, 100*gib, "")
			o := options(tc.size)
			o.StorageClass.ReclaimPolicy = tc.policy
			pv, state, err := newProvisioner(hosts).Provision(t.Context(), o)
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			if state != controller.ProvisioningFinished {
				t.Errorf("state %q, want %q", state, controller.ProvisioningFinished)
			}
			want := wantPV(tc.limit, tc.size, tc.wantPolicy)
			if !reflect.DeepEqual(pv, want) {
				t.Errorf("Provision made\n%+v\nwant\n%+v", pv, want)
			}
			if &pv.Spec.AccessModes[0] == &o.PVC.Spec.AccessModes[0] {
				t.Errorf("the volume shares the claim's access modes slice")
			}
			// The host: space read under the node's root, the volume
			// made under it.
			if got := r.calls[:3]; got[0][0] != "mkdir" || got[1][0] != "stat" || got[2][0] != "find" ||
				got[0][len(got[0])-1] != root || got[1][len(got[1])-1] != root || got[2][1] != root {
				t.Errorf("first commands %q, want ReadSpace of %s", got, root)
			}
			truncs := r.ran("truncate")
			if tc.wantImgSize == 0 {
				if len(truncs) != 0 || len(r.ran("mount")) != 0 {
					t.Errorf("a plain directory volume got an image: %q", r.calls)
				}
			} else {
				if len(truncs) != 1 || truncs[0][2] != strconv.FormatInt(tc.wantImgSize, 10) {
					t.Errorf("truncate %q, want one of size %d", truncs, tc.wantImgSize)
				}
				if r.mounts[dir] != 1 || !r.paths[dir+".img"] {
					t.Errorf("image %v, %d mounts on %s; want a mounted image", r.paths[dir+".img"], r.mounts[dir], dir)
				}
			}
			if last := r.calls[len(r.calls)-1]; !slices.Equal(last, []string{"install", "-d", "-m", "0777", "--", dir + "/data"}) {
				t.Errorf("last command %q, want install -d of the data directory", last)
			}
		})
	}
}

func TestProvisionVolumeMode(t *testing.T) {
	hosts, _ := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
	o := options("1Gi")
	fs := corev1.PersistentVolumeFilesystem
	o.PVC.Spec.VolumeMode = &fs
	pv, _, err := newProvisioner(hosts).Provision(t.Context(), o)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if pv.Spec.VolumeMode == nil || *pv.Spec.VolumeMode != fs {
		t.Errorf("volume mode %v, want %s", pv.Spec.VolumeMode, fs)
	}
}

func TestProvisionHostFails(t *testing.T) {
	for _, tc := range []struct {
		name      string
		fail      func([]string) error
		statOut   string
		wantState controller.ProvisioningState
		wantMsg   string
	}{
		{
			name:      "stat fails",
			fail:      failOn("stat", 1, "stat: Input/output error"),
			wantState: controller.ProvisioningNoChange,
			wantMsg:   "Input/output error",
		},
		{
			name:      "host unreachable",
			fail:      func([]string) error { return errors.New("ssh: handshake failed") },
			wantState: controller.ProvisioningNoChange,
			wantMsg:   "ssh: handshake failed",
		},
		{
			name:      "stat prints nonsense",
			statOut:   "nonsense\n",
			wantState: controller.ProvisioningNoChange,
			wantMsg:   "unexpected output",
		},
		{
			name:      "mkfs fails",
			fail:      failOn("mkfs.ext4", 1, "mkfs.ext4: Device size reported to be zero"),
			wantState: controller.ProvisioningFinished,
			wantMsg:   "Device size reported to be zero",
		},
		{
			name:      "mount fails",
			fail:      failOn("mount", 32, "mount: failed to setup loop device"),
			wantState: controller.ProvisioningFinished,
			wantMsg:   "failed to setup loop device",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, r := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
			if tc.statOut != "" {
				r.statOut = tc.statOut
			}
			r.fail = tc.fail
			pv, state, err := newProvisioner(hosts).Provision(t.Context(), options("1Gi"))
			if pv != nil {
				t.Errorf("Provision returned a volume: %+v", pv)
			}
			if state != tc.wantState {
				t.Errorf("state %q, want %q", state, tc.wantState)
			}
			var herr *hostvolume.Error
			if !errors.As(err, &herr) {
				t.Fatalf("Provision: %v (%T), want a *hostvolume.Error", err, err)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not say %q", err, tc.wantMsg)
			}
		})
	}
}

func TestVolumeOf(t *testing.T) {
	const dir = root + "/" + pvName
	for _, tc := range []struct {
		name string
		ann  map[string]string
		want hostvolume.Volume
		ok   bool
	}{
		{
			name: "loop file",
			ann:  map[string]string{"pv.kubernetes.io/provisioned-by": Name, rbnv1.AnnotationVolumeDir: dir, rbnv1.AnnotationVolumeImage: dir + ".img"},
			want: hostvolume.Volume{Dir: dir, Image: dir + ".img"}, ok: true,
		},
		{
			name: "plain directory",
			ann:  map[string]string{"pv.kubernetes.io/provisioned-by": Name, rbnv1.AnnotationVolumeDir: dir},
			want: hostvolume.Volume{Dir: dir}, ok: true,
		},
		{
			name: "another provisioner",
			ann:  map[string]string{"pv.kubernetes.io/provisioned-by": "rancher.io/local-path", rbnv1.AnnotationVolumeDir: dir},
		},
		{
			name: "no provisioned-by",
			ann:  map[string]string{rbnv1.AnnotationVolumeDir: dir, rbnv1.AnnotationVolumeImage: dir + ".img"},
		},
		{
			name: "no volume dir",
			ann:  map[string]string{"pv.kubernetes.io/provisioned-by": Name, rbnv1.AnnotationVolumeImage: dir + ".img"},
		},
		{
			name: "empty volume dir",
			ann:  map[string]string{"pv.kubernetes.io/provisioned-by": Name, rbnv1.AnnotationVolumeDir: ""},
		},
		{name: "no annotations"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Annotations: tc.ann}}
			got, ok := VolumeOf(pv)
			if got != tc.want || ok != tc.ok {
				t.Errorf("VolumeOf = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}

// provisionedPV is the volume Provision makes, as the library stores it.
func provisionedPV(limit rbnv1.VolumeSizeLimit) *corev1.PersistentVolume {
	pv := wantPV(limit, "1Gi", corev1.PersistentVolumeReclaimDelete)
	pv.Annotations["pv.kubernetes.io/provisioned-by"] = Name
	return pv
}

func TestDelete(t *testing.T) {
	dir := root + "/" + pvName
	for _, tc := range []struct {
		name      string
		limit     rbnv1.VolumeSizeLimit
		mounted   bool
		wantCalls [][]string
	}{
		{
			name: "loop file", limit: rbnv1.VolumeSizeLimitLoopFile, mounted: true,
			wantCalls: [][]string{
				{"findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", dir},
				{"umount", "--", dir},
				{"findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", dir},
				{"rm", "-rf", "--one-file-system", "--", dir, dir + ".img", dir + ".img.tmp"},
			},
		},
		{
			name: "loop file not mounted", limit: rbnv1.VolumeSizeLimitLoopFile,
			wantCalls: [][]string{
				{"findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", dir},
				{"rm", "-rf", "--one-file-system", "--", dir, dir + ".img", dir + ".img.tmp"},
			},
		},
		{
			name: "plain directory", limit: rbnv1.VolumeSizeLimitNone,
			wantCalls: [][]string{{"rm", "-rf", "--one-file-system", "--", dir}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The node's root now says elsewhere: the volume is removed
			// where its annotations say it is.
			r := newFakeRunner(t, "", "")
			hosts := fakeHosts{node: {r: r, spec: rbnv1.Default(&rbnv1.RemoteBuildNodeSpec{
				Volumes: &rbnv1.VolumesSpec{Root: "/elsewhere", SizeLimit: tc.limit},
			})}}
			r.paths[dir+"/data/file"] = true
			if tc.mounted {
				r.mounts[dir] = 1
			}
			err := newProvisioner(hosts).Delete(t.Context(), provisionedPV(tc.limit))
			if err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if !slices.EqualFunc(r.calls, tc.wantCalls, slices.Equal[[]string]) {
				t.Errorf("commands %q, want %q", r.calls, tc.wantCalls)
			}
			if len(r.paths) != 0 || r.mounts[dir] != 0 {
				t.Errorf("left %v, %d mounts", r.paths, r.mounts[dir])
			}
		})
	}
}

// A volume Provision made is removed by Delete.
func TestProvisionThenDelete(t *testing.T) {
	hosts, r := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
	p := newProvisioner(hosts)
	pv, _, err := p.Provision(t.Context(), options("1Gi"))
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	pv.Annotations["pv.kubernetes.io/provisioned-by"] = Name // the library's
	if !p.ShouldDelete(t.Context(), pv) {
		t.Fatalf("ShouldDelete of the volume Provision made = false")
	}
	if err := p.Delete(t.Context(), pv); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	for q := range r.paths {
		if strings.HasPrefix(q, root+"/"+pvName) {
			t.Errorf("%s left after Delete", q)
		}
	}
	if n := r.mounts[root+"/"+pvName]; n != 0 {
		t.Errorf("%d mounts left after Delete", n)
	}
	// The node's volume root is read again after each.
	if r.changed != 2 {
		t.Errorf("VolumesChanged %d times for one volume made and removed, want 2", r.changed)
	}
}

func TestDeleteRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(pv *corev1.PersistentVolume)
		want   string
	}{
		{
			name: "another provisioner's",
			change: func(pv *corev1.PersistentVolume) {
				pv.Annotations["pv.kubernetes.io/provisioned-by"] = "example.com/nfs"
			},
			want: "not a volume of " + Name,
		},
		{
			name:   "no volume dir",
			change: func(pv *corev1.PersistentVolume) { delete(pv.Annotations, rbnv1.AnnotationVolumeDir) },
			want:   "not a volume of " + Name,
		},
		{
			name:   "node not served",
			change: func(pv *corev1.PersistentVolume) { pv.Labels[rbnv1.LabelNode] = "build-2" },
			want:   "node build-2 is not served",
		},
		{
			name:   "no node label",
			change: func(pv *corev1.PersistentVolume) { pv.Labels = nil },
			want:   "is not served",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, r := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
			pv := provisionedPV(rbnv1.VolumeSizeLimitLoopFile)
			tc.change(pv)
			err := newProvisioner(hosts).Delete(t.Context(), pv)
			var ierr *controller.IgnoredError
			if !errors.As(err, &ierr) {
				t.Fatalf("Delete: %v (%T), want a *controller.IgnoredError", err, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Delete: %q, want it to say %q", err, tc.want)
			}
			if len(r.calls) != 0 {
				t.Errorf("ran commands on the host: %q", r.calls)
			}
		})
	}
}

func TestDeleteHostFails(t *testing.T) {
	for _, tc := range []struct {
		name string
		fail func([]string) error
		want string
	}{
		{"busy", failOn("umount", 32, "umount: target is busy."), "target is busy"},
		{"rm fails", failOn("rm", 1, "rm: Permission denied"), "Permission denied"},
		{"unreachable", func([]string) error { return errors.New("ssh: connection refused") }, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, r := hostsWith(t, rbnv1.VolumeSizeLimitLoopFile, 100*gib, "")
			dir := root + "/" + pvName
			r.mounts[dir] = 1
			r.paths[dir+"/data"] = true
			r.fail = tc.fail
			err := newProvisioner(hosts).Delete(t.Context(), provisionedPV(rbnv1.VolumeSizeLimitLoopFile))
			if err == nil {
				t.Fatalf("Delete succeeded")
			}
			var ierr *controller.IgnoredError
			if errors.As(err, &ierr) {
				t.Errorf("Delete: %v is an IgnoredError: the library would not retry", err)
			}
			var herr *hostvolume.Error
			if !errors.As(err, &herr) {
				t.Errorf("Delete: %v (%T), want it to wrap a *hostvolume.Error", err, err)
			}
			if !strings.HasPrefix(err.Error(), "node "+node+": ") {
				t.Errorf("Delete: %q does not name the node first", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Delete: %q, want it to say %q", err, tc.want)
			}
			if tc.name == "busy" && len(r.ran("rm")) != 0 {
				t.Errorf("rm ran although the volume is still mounted")
			}
		})
	}
}
