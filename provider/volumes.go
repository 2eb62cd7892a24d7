package provider

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/remote-build-nodes/rbn/internal/podman"
	"github.com/remote-build-nodes/rbn/provider/pod"
)

// loaderRoot is where the loader container mounts each Files volume.
const loaderRoot = "/rbn-load"

// podVolumes is a pod's volumes on its host: it creates the named ones,
// writes the Files volumes, checks subPath mounts against the host's real
// paths (subpath.go) and removes them all when the pod goes.
type podVolumes struct {
	rt    podRuntime
	clock clock.PassiveClock
	uid   types.UID

	// mountpoints is each named volume's directory on the host, and each
	// hostPath volume's real path there, by Kubernetes volume name; nil
	// until create.
	mountpoints map[string]string
	// written is what each Files volume holds on the host (see
	// atomicwrite.go), by Kubernetes name, once written or learned.
	written map[string]*fileVolume
	// fill is the first fill of Files volumes under way on the host, if
	// any, and unfilled what it failed to write (hostfill.go).
	fill     *hostFill
	unfilled map[string]volumeFill
}

func newPodVolumes(rt podRuntime, clk clock.PassiveClock, uid types.UID) *podVolumes {
	return &podVolumes{rt: rt, clock: clk, uid: uid, written: map[string]*fileVolume{}}
}

// create mounts the file systems of the pod's provisioned volumes that
// are not (after a host reboot), checks the pod's typed hostPath volumes on the host (creating
// what DirectoryOrCreate and FileOrCreate ask for) and their real paths
// against the node's hostPathAllowlist's, creates its named
// volumes (idempotently), learns each one's host mountpoint and what its
// Files volumes already hold.
func (pv *podVolumes) create(ctx context.Context, plan *pod.Plan, allowlist []string, volumeRoot string) error {
	if err := mountProvisioned(ctx, pv.rt, plan); err != nil {
		return err
	}
	if err := checkHostPaths(ctx, pv.rt, plan); err != nil {
		return err
	}
	mountpoints, err := resolveHostPaths(ctx, pv.rt, plan, allowlist, volumeRoot)
	if err != nil {
		return err
	}
	if mountpoints == nil {
		mountpoints = map[string]string{}
	}
	for _, v := range plan.Volumes {
		if v.Kind == pod.VolumeHostPath {
			continue
		}
		labels := copyLabels(plan.Labels)
		labels[pod.LabelVolume] = v.K8sName
		var o []string
		opts := map[string]string{}
		if v.Tmpfs {
			opts["type"], opts["device"] = "tmpfs", "tmpfs"
			if v.SizeLimitBytes > 0 {
				o = append(o, tmpfsSizeOption(pv.rt.Info(), v.SizeLimitBytes))
			}
		}
		fsGroup := plan.FSGroup != nil && v.Kind == pod.VolumeEmptyDir
		if fsGroup {
			// podman makes the volume's root group-owned by it, and does
			// not chown it to the first container's user then; a tmpfs
			// gets the group and the mode as mount options.
			o = append(o, "gid="+strconv.FormatInt(*plan.FSGroup, 10))
			if v.Tmpfs {
				o = append(o, fmt.Sprintf("mode=%o", emptyDirFSGroupMode))
			}
		}
		if len(o) > 0 {
			opts["o"] = strings.Join(o, ",")
		}
		vol, err := pv.rt.EnsureVolume(ctx, v.PodmanName, labels, opts)
		if err != nil {
			return err
		}
		if fsGroup && !v.Tmpfs {
			// podman has no mode option for a volume on disk: its root is
			// made setgid and writable by all on the host.
			if err := pv.rt.Chmod(ctx, vol.Mountpoint, emptyDirFSGroupMode); err != nil {
				return fmt.Errorf("volume %s: fsGroup: %w", v.K8sName, err)
			}
		}
		mountpoints[v.K8sName] = vol.Mountpoint
	}
	pv.mountpoints = mountpoints
	if plan.TerminationVolume != "" {
		if err := pv.ensureTerminationVolume(ctx, plan); err != nil {
			return err
		}
	}
	return pv.learn(ctx, plan)
}

// ensureTerminationVolume creates the pod's termination volume and learns
// its mountpoint.
func (pv *podVolumes) ensureTerminationVolume(ctx context.Context, plan *pod.Plan) error {
	labels := copyLabels(plan.Labels)
	labels[pod.LabelVolume] = pod.TerminationLogs
	vol, err := pv.rt.EnsureVolume(ctx, plan.TerminationVolume, labels, map[string]string{})
	if err != nil {
		return err
	}
	pv.mountpoints[pod.TerminationLogs] = vol.Mountpoint
	return nil
}

// terminationPath is the host file of a run's termination message, from
// the run's container labels ("" when unknown: no termination volume, or
// a container without rbn's labels).
func (pv *podVolumes) terminationPath(st *podman.ContainerState) string {
	dir := pv.mountpoints[pod.TerminationLogs]
	name, attempt := st.Labels[pod.LabelContainer], st.Labels[pod.LabelAttempt]
	n, err := strconv.Atoi(attempt)
	if dir == "" || name == "" || err != nil {
		return ""
	}
	return path.Join(dir, pod.TerminationFile(name, n))
}

// terminationFile creates the empty file that one run of c gets at its
// terminationMessagePath, as the kubelet does before it creates the
// container: world-writable, so that a container of any user can write
// it. Created anew (emptied) for a run whose container is created again
// after a failed create, which never ran.
//
// The volume is created with the pod's other volumes; also here, for a
// debug container that is the pod's first with a path.
func (pv *podVolumes) terminationFile(ctx context.Context, plan *pod.Plan, c pod.Container, attempt int) error {
	if c.TerminationMessagePath == "" {
		return nil
	}
	if pv.mountpoints[pod.TerminationLogs] == "" && pv.mountpoints != nil && plan.TerminationVolume != "" {
		if err := pv.ensureTerminationVolume(ctx, plan); err != nil {
			return fmt.Errorf("termination message file of %s: %w", c.K8sName, err)
		}
	}
	dir := pv.mountpoints[pod.TerminationLogs]
	if dir == "" {
		return fmt.Errorf("termination message file of %s: %w", c.K8sName, pod.ErrNoMountpoint)
	}
	if err := pv.rt.EmptyFile(ctx, path.Join(dir, pod.TerminationFile(c.K8sName, attempt))); err != nil {
		return fmt.Errorf("termination message file of %s: %w", c.K8sName, err)
	}
	return nil
}

// emptyDirFSGroupMode is the mode of an emptyDir's root under an fsGroup:
// the kubelet's emptyDir root (0777) with the setgid bit its
// SetVolumeOwnership adds, so that what the containers create there
// belongs to the group.
const emptyDirFSGroupMode = 0o2777

// fsGroupTar is the group and the directory mode of what is written into a
// volume of kind: the fsGroup, with directories setgid (and, in an
// emptyDir, group-writable), as the kubelet's SetVolumeOwnership; else
// root's (gid -1: as the archive API writes it) and 0755.
func fsGroupTar(plan *pod.Plan, kind pod.VolumeKind) (gid int64, dirMode int64) {
	switch {
	case plan.FSGroup == nil || kind == pod.VolumeHostPath:
		return -1, 0o755
	case kind == pod.VolumeEmptyDir:
		return *plan.FSGroup, 0o2775
	default:
		return *plan.FSGroup, 0o2755
	}
}

// tmpfsSizeOption limits a tmpfs volume. Podman 4 sends any "size" volume
// option through its project-quota check, which refuses tmpfs; tmpfs's own
// nr_blocks (pages, taken as 4 KiB: a 64 KiB-page host gets a larger limit)
// reaches the mount untouched. Podman 5 handles size on tmpfs.
func tmpfsSizeOption(info *podman.HostInfo, bytes int64) string {
	if info != nil && podmanMajor(info.PodmanVersion) >= 5 {
		return fmt.Sprintf("size=%d", bytes)
	}
	return fmt.Sprintf("nr_blocks=%d", (bytes+4095)/4096)
}

func podmanMajor(version string) int {
	major, _, _ := strings.Cut(version, ".")
	n, _ := strconv.Atoi(major)
	return n
}

// A new pod's Files volumes mounted whole are written on the host while
// its podman pod is created (hostfill.go). Otherwise they are written with
// podman's archive API, which writes through to the volumes' directories
// on the host: into the first container that mounts them, once created and
// before it starts (fillThrough; copying into a created container works on
// podman 4 and 5, read-only mounts included), and, for those that must
// exist before any container is created, through a loader container first
// (fillLoaded).

// fillLoaded writes, before any container of the pod is created, the
// volumes that cannot wait for fillThrough: Files volumes that a container
// mounts with a subPath, and the directories that subPath mounts of
// emptyDir volumes bind (a bind mount needs its source to exist at create),
// as kubelet does, before any container of the pod has run: nothing could
// have planted a symlink in the volume yet. They are written into a loader
// container that mounts them and is never started (image: the pod's infra
// image, always present). A Files volume that holds its layout already (the
// pod adopted after a restart of rbn-kubelet) is left to refresh.
func (pv *podVolumes) fillLoaded(ctx context.Context, plan *pod.Plan, image string) error {
	subdirs := subPathDirs(plan)
	files := slices.DeleteFunc(loaderVolumes(plan), func(v pod.Volume) bool {
		return v.Kind == pod.VolumeFiles && pv.written[v.K8sName].filled()
	})
	if len(files) == 0 {
		return nil
	}
	loader, remove, err := volumeContainer(ctx, pv.rt, pv.uid, plan, "loader", image, files)
	if err != nil {
		return err
	}
	defer remove()
	for _, v := range files {
		var data []byte
		var fv *fileVolume
		if v.Kind == pod.VolumeFiles {
			data, fv, err = pv.firstFill(plan, v)
		} else {
			gid, dirMode := fsGroupTar(plan, v.Kind)
			data, err = tarFiles(nil, subdirs[v.K8sName], nil, pv.clock.Now(), gid, dirMode)
		}
		if err != nil {
			return err
		}
		if err := pv.rt.CopyInto(ctx, loader, path.Join(loaderRoot, v.K8sName), bytes.NewReader(data)); err != nil {
			return fmt.Errorf("fill volume %s: %w", v.K8sName, err)
		}
		if fv != nil {
			pv.written[v.K8sName] = fv
		}
	}
	return nil
}

// loaderVolumes are the volumes written before any container is created:
// Files volumes that a container mounts in part (a whole one is written
// into the first container that mounts it, see fillThrough) and emptyDirs
// whose subPath directories must exist.
func loaderVolumes(plan *pod.Plan) []pod.Volume {
	subdirs := subPathDirs(plan)
	var files []pod.Volume
	for _, v := range plan.Volumes {
		if v.Kind == pod.VolumeFiles && !mountedWhole(plan, v.K8sName) || (v.Kind == pod.VolumeEmptyDir && len(subdirs[v.K8sName]) > 0) {
			files = append(files, v)
		}
	}
	return files
}

// newVolumeContainerSpec is a container that is never started, only there
// for podman's archive API to reach the volumes it mounts.
func newVolumeContainerSpec(name, image string, labels map[string]string, role string) *specgen.SpecGenerator {
	spec := specgen.NewSpecGenerator(image, false)
	spec.Name = name
	spec.Labels = copyLabels(labels)
	spec.Labels[pod.LabelRole] = role
	spec.Entrypoint = []string{"/loader-never-runs"}
	return spec
}

// namedVolume mounts v at loaderRoot/<its Kubernetes name>.
func namedVolume(v pod.Volume) *specgen.NamedVolume {
	return &specgen.NamedVolume{Name: v.PodmanName, Dest: path.Join(loaderRoot, v.K8sName), Options: []string{"rw"}}
}

// mountedWhole reports whether every mount of a volume is of the whole
// volume: then fillThrough can write it through the first container that
// mounts it. A volume no container mounts has nobody to see it.
func mountedWhole(plan *pod.Plan, volume string) bool {
	for _, c := range append(slices.Clone(plan.InitContainers), plan.Containers...) {
		for _, m := range c.Mounts {
			if m.Volume == volume && m.SubPath != "" {
				return false
			}
		}
	}
	return true
}

// fillThrough writes the Files volumes that c mounts whole and that are
// still empty into c's container, created and not yet started. Only a
// container's first run fills: a restarted one finds its volumes as the
// refresh keeps them, and so does the first reader of a volume another
// container, or an earlier rbn-kubelet, filled (see learn).
func (pv *podVolumes) fillThrough(ctx context.Context, plan *pod.Plan, c pod.Container, attempt int, container string) error {
	if attempt > 0 {
		return nil
	}
	pv.settleFill()
	for _, m := range c.Mounts {
		v := planVolume(plan, m.Volume)
		if v == nil || v.Kind != pod.VolumeFiles || pv.written[v.K8sName].filled() || !mountedWhole(plan, v.K8sName) {
			continue
		}
		// One the host could not fill gets the archive it was given: the
		// same names over whatever part of it the host wrote.
		data, fv := pv.unfilled[v.K8sName].data, pv.unfilled[v.K8sName].fv
		if fv == nil {
			var err error
			if data, fv, err = pv.firstFill(plan, *v); err != nil {
				return err
			}
		}
		if err := pv.rt.CopyInto(ctx, container, m.MountPath, bytes.NewReader(data)); err != nil {
			return fmt.Errorf("fill volume %s: %w", v.K8sName, err)
		}
		pv.written[v.K8sName] = fv
		delete(pv.unfilled, v.K8sName)
	}
	return nil
}

func planVolume(plan *pod.Plan, name string) *pod.Volume {
	for i := range plan.Volumes {
		if plan.Volumes[i].K8sName == name {
			return &plan.Volumes[i]
		}
	}
	return nil
}

// subPathDirs lists, per EmptyDir volume, the subPath directories its mounts need.
func subPathDirs(plan *pod.Plan) map[string][]string {
	emptyDirs := map[string]bool{}
	for _, v := range plan.Volumes {
		if v.Kind == pod.VolumeEmptyDir {
			emptyDirs[v.K8sName] = true
		}
	}
	out := map[string][]string{}
	for _, c := range append(append([]pod.Container(nil), plan.InitContainers...), plan.Containers...) {
		for _, m := range c.Mounts {
			if m.SubPath != "" && emptyDirs[m.Volume] {
				out[m.Volume] = append(out[m.Volume], m.SubPath)
			}
		}
	}
	return out
}

// tarLink is a symlink in an archive.
type tarLink struct{ name, target string }

// tarFiles packs files (relative paths) with their directories, plus extra
// directories, the directories with dirMode, and symlinks (after
// everything else); gid, when not negative, is the group of every entry
// (an fsGroup).
func tarFiles(files []pod.File, extraDirs []string, links []tarLink, now time.Time, gid, dirMode int64) ([]byte, error) {
	group := func(h *tar.Header) *tar.Header {
		if gid >= 0 {
			h.Gid = int(gid)
		}
		return h
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, f := range files {
		for d := path.Dir(f.Path); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, e := range extraDirs {
		for d := path.Clean(e); d != "." && d != "/" && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for _, d := range sortedKeys(dirs) {
		if err := tw.WriteHeader(group(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: dirMode, ModTime: now})); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		h := &tar.Header{Typeflag: tar.TypeReg, Name: f.Path, Mode: int64(f.Mode), Size: int64(len(f.Data)), ModTime: now}
		if err := tw.WriteHeader(group(h)); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, err
		}
	}
	for _, l := range links {
		h := &tar.Header{Typeflag: tar.TypeSymlink, Name: l.name, Linkname: l.target, Mode: 0o777, ModTime: now}
		if err := tw.WriteHeader(group(h)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// remove removes every volume of the pod, whoever created it.
func (pv *podVolumes) remove(ctx context.Context) error {
	pv.settleFill()
	vols, err := pv.rt.ListVolumes(ctx, map[string]string{pod.LabelPodUID: string(pv.uid)})
	if err != nil {
		return err
	}
	for _, v := range vols {
		if err := pv.rt.RemoveVolume(ctx, v.Name); err != nil {
			return err
		}
	}
	return nil
}

// volumeContainer creates a container of the pod that is never started
// (image: the pod's infra image, always present) and mounts vols under
// loaderRoot, for podman's archive API to read and write them. remove
// deletes it.
func volumeContainer(ctx context.Context, rt podRuntime, uid types.UID, plan *pod.Plan, role, image string, vols []pod.Volume) (name string, remove func(), err error) {
	name = pod.PodName(uid) + "-" + role
	spec := newVolumeContainerSpec(name, image, plan.Labels, role)
	for _, v := range vols {
		spec.Volumes = append(spec.Volumes, namedVolume(v))
	}
	_ = rt.RemoveContainer(ctx, name, true) // a leftover from an interrupted attempt
	if _, err := rt.CreateContainer(ctx, spec); err != nil {
		return "", nil, fmt.Errorf("volume %s container: %w", role, err)
	}
	// A container left behind by a failed removal is removed at the next
	// attempt (above) or with the pod (teardown lists it by the pod's UID
	// and reports what it cannot remove): the work it served is done.
	return name, func() { _ = rt.RemoveContainer(context.WithoutCancel(ctx), name, true) }, nil
}
