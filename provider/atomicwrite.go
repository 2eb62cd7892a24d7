package provider

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/remote-build-nodes/rbn/provider/pod"
)

// Files volumes (secret, configMap, downwardAPI, projected) have on the
// host the layout of kubelet's AtomicWriter:
//
//	..2026_12_04_16_00_00.<hash>/   the files (the data directory)
//	..data -> ..2026_12_04_16_00_00.<hash>
//	<name> -> ..data/<name>         one per top-level entry of the files
//
// An update writes a new data directory and a ..data_tmp symlink to it,
// renames ..data_tmp over ..data, then removes the top-level symlinks no
// longer wanted and the old data directory. The rename is one rename(2): a
// reader that opens <name> or lists ..data/ sees the old files or the new
// ones, never a mix. A subPath mount binds the file inside the data
// directory its path resolved to when the container was created (see
// subpath.go), so that, as with kubelet, it keeps the content it started
// with; the next run of the container sees the new one.
//
// How: podman's archive API writes the files, as for a first fill the
// host did not write (hostfill.go), through a container that mounts the
// volume and is never started, so their ownership is what podman gives
// any volume content. That API
// cannot rename, and extracting a symlink over an existing one unlinks it
// first, leaving a moment with no ..data at all. So the rename, and the
// removals, run on the host over the node's SSH connection, as argv (mv -T,
// rm -rf; no shell), in the volume's directory there (its mountpoint, which
// belongs to the user podman and SSH run as). New top-level symlinks come
// in the same archive as the data directory, so before the swap: until then
// they name a file that ..data does not have yet, which a reader sees as a
// missing file, as it did before they existed (kubelet adds them right after
// the swap).
//
// The data directory's name ends with a hash of the content (kubelet's
// ends with a random suffix): whether a volume holds what the pod asks for
// is known from ..data's target alone, so unchanged content writes
// nothing, and a restarted rbn-kubelet learns every Files volume of a pod
// with one listing on the host (learn) instead of rewriting them.

const (
	dataLink    = "..data"
	dataLinkTmp = "..data_tmp"
	// dataDirPrefix is kubelet's time layout for data directories, in UTC.
	dataDirPrefix = "..2006_01_02_15_04_05."
)

// fileVolume is a Files volume's content on the host, as last written or
// listed.
type fileVolume struct {
	dataDir string          // ..data's target; "" while the volume is empty
	top     map[string]bool // the top-level symlinks
	// stale are other names of the volume's directory: data directories
	// and a ..data_tmp left by an interrupted update, removed by the next.
	stale []string
}

// filled reports whether the volume has its layout.
func (fv *fileVolume) filled() bool { return fv != nil && fv.dataDir != "" }

// empty reports whether the volume's directory was found to hold nothing.
func (fv *fileVolume) empty() bool {
	return fv != nil && fv.dataDir == "" && len(fv.top) == 0 && len(fv.stale) == 0
}

// holds reports whether the volume holds the content of hash.
func (fv *fileVolume) holds(hash string) bool {
	return fv.filled() && strings.HasSuffix(fv.dataDir, "."+hash)
}

// contentHash identifies the content of a Files volume: paths, modes and
// data (the files are sorted by path). The pod's UID is mixed in so that
// equal content of two pods does not show as equal names on the host.
func contentHash(uid types.UID, files []pod.File) string {
	h := sha256.New()
	h.Write([]byte(uid))
	for _, f := range files {
		fmt.Fprintf(h, "\x00%s\x00%o\x00%d\x00", f.Path, f.Mode, len(f.Data))
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:20]
}

func dataDirName(now time.Time, hash string) string {
	return now.UTC().Format(dataDirPrefix) + hash
}

// topLevel lists the first path elements of files, sorted, once each.
func topLevel(files []pod.File) []string {
	var out []string
	for _, f := range files {
		first, _, _ := strings.Cut(f.Path, "/")
		out = append(out, first)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// layoutTar is the archive that writes files into the new data directory
// dir, link (..data, or ..data_tmp for a swap) pointing to it, and the
// top-level symlinks named in top, owned by the plan's fsGroup if any.
func layoutTar(plan *pod.Plan, files []pod.File, dir, link string, top []string, now time.Time) ([]byte, error) {
	inDir := make([]pod.File, len(files))
	for i, f := range files {
		inDir[i] = pod.File{Path: dir + "/" + f.Path, Data: f.Data, Mode: f.Mode}
	}
	links := []tarLink{{name: link, target: dir}}
	for _, name := range top {
		links = append(links, tarLink{name: name, target: dataLink + "/" + name})
	}
	gid, dirMode := fsGroupTar(plan, pod.VolumeFiles)
	return tarFiles(inDir, []string{dir}, links, now, gid, dirMode)
}

// firstFill is the archive of a Files volume's first content, its layout
// complete, and the volume as it will then be.
func (pv *podVolumes) firstFill(plan *pod.Plan, v pod.Volume) ([]byte, *fileVolume, error) {
	now := pv.clock.Now()
	dir := dataDirName(now, contentHash(pv.uid, v.Files))
	top := topLevel(v.Files)
	data, err := layoutTar(plan, v.Files, dir, dataLink, top, now)
	if err != nil {
		return nil, nil, err
	}
	fv := &fileVolume{dataDir: dir, top: map[string]bool{}}
	for _, name := range top {
		fv.top[name] = true
	}
	if old := pv.written[v.K8sName]; old != nil {
		fv.stale = old.stale
	}
	return data, fv, nil
}

// learn reads, with one command on the host, what the plan's Files
// volumes not known yet hold: a restarted rbn-kubelet finds them written.
func (pv *podVolumes) learn(ctx context.Context, plan *pod.Plan) error {
	byDir := map[string]string{}
	var dirs []string
	for _, v := range plan.Volumes {
		mp := pv.mountpoints[v.K8sName]
		if v.Kind != pod.VolumeFiles || pv.written[v.K8sName] != nil || mp == "" {
			continue
		}
		byDir[mp] = v.K8sName
		dirs = append(dirs, mp)
	}
	if len(dirs) == 0 {
		return nil
	}
	entries, err := pv.rt.ListDirs(ctx, dirs)
	if err != nil {
		return fmt.Errorf("list the pod's files volumes: %w", err)
	}
	found := map[string]*fileVolume{}
	for _, name := range byDir {
		found[name] = &fileVolume{top: map[string]bool{}}
	}
	for _, e := range entries {
		fv := found[byDir[e.Dir]]
		switch {
		case fv == nil:
		case e.Name == dataLink:
			fv.dataDir = e.Link
		case strings.HasPrefix(e.Name, ".."):
			fv.stale = append(fv.stale, e.Name)
		default:
			fv.top[e.Name] = true
		}
	}
	for name, fv := range found {
		fv.stale = slices.DeleteFunc(fv.stale, func(s string) bool { return s == fv.dataDir })
		pv.written[name] = fv
	}
	return nil
}

// refresh writes the plan's Files volumes whose content (files: rendered
// now, by volume name) differs from what they hold, each with an atomic
// swap, and says which it wrote. The plan takes the new content, for the
// volumes not filled yet (see fillThrough) to get it.
func (pv *podVolumes) refresh(ctx context.Context, plan *pod.Plan, files map[string][]pod.File) ([]string, error) {
	pv.settleFill()
	var todo []pod.Volume
	for i := range plan.Volumes {
		v := &plan.Volumes[i]
		fs, ok := files[v.K8sName]
		if v.Kind != pod.VolumeFiles || !ok {
			continue
		}
		v.Files = fs
		if fv := pv.written[v.K8sName]; fv.filled() && !fv.holds(contentHash(pv.uid, fs)) {
			todo = append(todo, *v)
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	image, err := infraImage(ctx, pv.rt, plan)
	if err != nil {
		return nil, err
	}
	ctr, remove, err := volumeContainer(ctx, pv.rt, pv.uid, plan, "refresh", image, todo)
	if err != nil {
		return nil, err
	}
	defer remove()
	var changed []string
	for _, v := range todo {
		if err := pv.swap(ctx, plan, ctr, v); err != nil {
			return changed, fmt.Errorf("update volume %s: %w", v.K8sName, err)
		}
		changed = append(changed, v.K8sName)
	}
	return changed, nil
}

// swap writes v's files into a new data directory through ctr, which
// mounts v at loaderRoot/<its name>, swaps ..data to it on the host and
// removes what the old content left.
func (pv *podVolumes) swap(ctx context.Context, plan *pod.Plan, ctr string, v pod.Volume) error {
	old, mp := pv.written[v.K8sName], pv.mountpoints[v.K8sName]
	now := pv.clock.Now()
	dir := dataDirName(now, contentHash(pv.uid, v.Files))
	top := topLevel(v.Files)
	var added []string
	for _, name := range top {
		if !old.top[name] {
			added = append(added, name)
		}
	}
	data, err := layoutTar(plan, v.Files, dir, dataLinkTmp, added, now)
	if err != nil {
		return err
	}
	if err := pv.rt.CopyInto(ctx, ctr, path.Join(loaderRoot, v.K8sName), bytes.NewReader(data)); err != nil {
		return err
	}
	if err := pv.rt.Rename(ctx, path.Join(mp, dataLinkTmp), path.Join(mp, dataLink)); err != nil {
		return err
	}
	fv := &fileVolume{dataDir: dir, top: map[string]bool{}}
	for _, name := range top {
		fv.top[name] = true
	}
	pv.written[v.K8sName] = fv
	var stale []string
	for name := range old.top {
		if !fv.top[name] {
			stale = append(stale, name)
		}
	}
	for _, name := range append(slices.Clone(old.stale), old.dataDir) {
		if name != dir {
			stale = append(stale, name)
		}
	}
	slices.Sort(stale)
	stale = slices.Compact(stale)
	paths := make([]string, len(stale))
	for i, name := range stale {
		paths[i] = path.Join(mp, name)
	}
	if err := pv.rt.RemovePaths(ctx, paths); err != nil {
		// The new content is in place; the next update removes these.
		fv.stale = stale
		return fmt.Errorf("remove the old content: %w", err)
	}
	return nil
}
