// Package hostvolume makes, mounts, measures and removes rbn's host-local
// volumes on a build host: the storage behind PersistentVolumes of the
// rbn.dev/host-local provisioner. Each operation is a few commands over the
// host's SSH connection, every one an argv (never a shell string), each
// safe to run again after a failure part way.
//
// A volume named N under root R is the directory R/N. With a loop file
// (rbnv1.VolumeSizeLimitLoopFile) R/N is the mount point of an ext4 file
// system held in the sparse file R/N.img, of the claim's size: a write
// beyond it fails with ENOSPC inside the volume, and the host's disk only
// gives the volume what it writes. Pods mount R/N/data, which, with a loop
// file, is inside that file system: a volume whose file system is not
// mounted (after a reboot, before EnsureMounted) has no data directory, so
// a pod can never write to the host's disk through it by mistake.
package hostvolume

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/internal/sshconn"
)

// Runner runs a command on the host and returns its standard output; a
// command that exits non-zero is an *sshconn.ExitError.
type Runner interface {
	Output(ctx context.Context, argv ...string) ([]byte, error)
}

// MinImageSize is the smallest file system a loop volume gets: mkfs.ext4
// refuses much smaller ones, and its own metadata needs a few MiB. A claim
// for less gets this much.
const MinImageSize = 16 << 20

// imageSuffix and tmpSuffix name a loop volume's file system file, and the
// file it is made in until whole.
const (
	imageSuffix = ".img"
	tmpSuffix   = ".img.tmp"
)

// mountOptions: a volume holds build data, never devices or setuid
// programs that would act on the host.
const mountOptions = "loop,nodev,nosuid"

// Volume is one volume's place on its host.
type Volume struct {
	// Dir is the volume's directory, the loop file system's mount point.
	Dir string
	// Image is the file that holds the volume's file system; "" when the
	// volume is a plain directory (rbnv1.VolumeSizeLimitNone).
	Image string
}

// Layout is the volume name's place under root; limit says whether it has
// a file system of its own.
func Layout(root, name string, limit rbnv1.VolumeSizeLimit) Volume {
	v := Volume{Dir: path.Join(root, name)}
	if limit != rbnv1.VolumeSizeLimitNone {
		v.Image = v.Dir + imageSuffix
	}
	return v
}

// Data is the directory pods mount.
func (v Volume) Data() string { return path.Join(v.Dir, "data") }

// tmpImage is the file a loop volume's file system is made in until whole.
func (v Volume) tmpImage() string { return strings.TrimSuffix(v.Image, imageSuffix) + tmpSuffix }

// Error is a failed host operation on a volume, with what the host said.
type Error struct {
	Op, Path string
	Err      error
}

func (e *Error) Error() string { return fmt.Sprintf("%s %s on the host: %v", e.Op, e.Path, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// run runs argv; a failure is an *Error.
func run(ctx context.Context, r Runner, op, p string, argv ...string) ([]byte, error) {
	out, err := r.Output(ctx, argv...)
	if err != nil {
		// An *sshconn.ExitError says the command and its stderr.
		return nil, &Error{Op: op, Path: p, Err: err}
	}
	return out, nil
}

// exitCode is the exit status of a command that ran and failed; -1 for
// any other error.
func exitCode(err error) int {
	var exit *sshconn.ExitError
	if errors.As(err, &exit) {
		return exit.Status
	}
	return -1
}

// mounted says whether something is mounted at dir (findmnt exits 1 when
// nothing is).
func mounted(ctx context.Context, r Runner, dir string) (bool, error) {
	_, err := r.Output(ctx, "findmnt", "--noheadings", "--output", "TARGET", "--mountpoint", dir)
	switch {
	case err == nil:
		return true, nil
	case exitCode(err) == 1:
		return false, nil
	}
	return false, &Error{Op: "findmnt", Path: dir, Err: err}
}

// exists says whether p exists on the host (test exits 1 when not).
func exists(ctx context.Context, r Runner, p string) (bool, error) {
	_, err := r.Output(ctx, "test", "-e", p)
	switch {
	case err == nil:
		return true, nil
	case exitCode(err) == 1:
		return false, nil
	}
	return false, &Error{Op: "test", Path: p, Err: err}
}

// Create makes v, holding size bytes, and leaves it ready for pods (its
// file system mounted, its data directory writable by any user, as
// local-path-provisioner's: the pod's securityContext decides who writes).
// A loop volume's file system is made in a temporary file renamed once
// whole, so that a Create cut short is finished by the next one.
func Create(ctx context.Context, r Runner, v Volume, size int64) error {
	if v.Image != "" {
		if err := createImage(ctx, r, v, max(size, MinImageSize)); err != nil {
			return err
		}
		if err := EnsureMounted(ctx, r, v); err != nil {
			return err
		}
	}
	_, err := run(ctx, r, "install -d", v.Data(), "install", "-d", "-m", "0777", "--", v.Data())
	return err
}

func createImage(ctx context.Context, r Runner, v Volume, size int64) error {
	ok, err := exists(ctx, r, v.Image)
	if err != nil || ok {
		return err
	}
	tmp := v.tmpImage()
	if _, err := run(ctx, r, "mkdir", path.Dir(v.Image), "mkdir", "-p", "--", path.Dir(v.Image)); err != nil {
		return err
	}
	// A file of the size, sparse: the disk gives it what is written.
	if _, err := run(ctx, r, "truncate", tmp, "truncate", "-s", strconv.FormatInt(size, 10), "--", tmp); err != nil {
		return err
	}
	// -m 0: no blocks reserved for root (the pod gets the whole size);
	// lazy init: mkfs writes neither inode tables nor the journal in full,
	// so a 300 GiB volume costs seconds and a few MiB.
	if _, err := run(ctx, r, "mkfs.ext4", tmp, "mkfs.ext4", "-q", "-F", "-m", "0",
		"-E", "lazy_itable_init=1,lazy_journal_init=1", "--", tmp); err != nil {
		return err
	}
	_, err = run(ctx, r, "mv", v.Image, "mv", "-T", "--", tmp, v.Image)
	return err
}

// EnsureMounted mounts a loop volume's file system at its directory when
// nothing is mounted there (a host's mounts do not survive its reboot). A
// plain directory volume needs nothing.
func EnsureMounted(ctx context.Context, r Runner, v Volume) error {
	if v.Image == "" {
		return nil
	}
	ok, err := mounted(ctx, r, v.Dir)
	if err != nil || ok {
		return err
	}
	ok, err = exists(ctx, r, v.Image)
	if err != nil {
		return err
	}
	if !ok {
		return &Error{Op: "mount", Path: v.Dir, Err: fmt.Errorf("the volume's file system %s is missing", v.Image)}
	}
	if _, err := run(ctx, r, "mkdir", v.Dir, "mkdir", "-p", "--", v.Dir); err != nil {
		return err
	}
	_, err = run(ctx, r, "mount", v.Dir, "mount", "-o", mountOptions, "--", v.Image, v.Dir)
	return err
}

// maxUnmounts bounds the unmounts of one Remove: a volume's directory has
// its own file system mounted once; more mounts stacked there are someone
// else's doing, and Remove does not chase them forever.
const maxUnmounts = 4

// Remove unmounts v's file system and removes its directory and file: the
// volume's data is gone. A volume already gone is no error. A file system
// that cannot be unmounted (busy) fails Remove with nothing removed.
func Remove(ctx context.Context, r Runner, v Volume) error {
	if v.Image != "" {
		for i := 0; ; i++ {
			ok, err := mounted(ctx, r, v.Dir)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			if i == maxUnmounts {
				return &Error{Op: "umount", Path: v.Dir, Err: fmt.Errorf("still mounted after %d unmounts", maxUnmounts)}
			}
			if _, err := run(ctx, r, "umount", v.Dir, "umount", "--", v.Dir); err != nil {
				return err
			}
		}
	}
	// --one-file-system: rm never descends into anything mounted below the
	// directory.
	argv := []string{"rm", "-rf", "--one-file-system", "--", v.Dir}
	if v.Image != "" {
		argv = append(argv, v.Image, v.tmpImage())
	}
	_, err := run(ctx, r, "rm", v.Dir, argv...)
	return err
}

// Space is the disk space under a volume root.
type Space struct {
	// Total is the size of the root's file system.
	Total int64
	// Available is what the root's file system has free for unprivileged
	// writes.
	Available int64
	// Promised is what the loop volumes under the root may still take of
	// it: each one's size less what its file holds already.
	Promised int64
	// Volumes counts the loop volumes' files under the root (a volume
	// being made may have two), Size sums their sizes and Used what they
	// hold on the disk.
	Volumes    int
	Size, Used int64
}

// Free is the space a new volume may have without taking what existing
// volumes were promised.
func (s Space) Free() int64 { return s.Available - s.Promised }

// ReadSpace reads root's file system's free space and what the loop
// volumes under it were promised, creating root if it is missing. The
// files of the volume named except (one an earlier attempt left) are not
// counted: that volume is the one being made.
func ReadSpace(ctx context.Context, r Runner, root, except string) (Space, error) {
	if _, err := run(ctx, r, "mkdir", root, "mkdir", "-p", "--", root); err != nil {
		return Space{}, err
	}
	// %b: blocks in all; %a: blocks free for unprivileged users; %S: the
	// size of a block.
	out, err := run(ctx, r, "stat -f", root, "stat", "-f", "-c", "%b %a %S", "--", root)
	if err != nil {
		return Space{}, err
	}
	f := strings.Fields(string(out))
	n, err := ints(string(out), f...)
	if err == nil && len(n) != 3 {
		err = fmt.Errorf("unexpected output %q", out)
	}
	if err != nil {
		return Space{}, &Error{Op: "stat -f", Path: root, Err: err}
	}
	sp := Space{Total: n[0] * n[2], Available: n[1] * n[2]}
	// %s: the file's size; %b: 512-byte blocks it holds; %f: its name.
	out, err = run(ctx, r, "find", root, "find", root, "-mindepth", "1", "-maxdepth", "1", "-type", "f",
		"(", "-name", "*"+imageSuffix, "-o", "-name", "*"+tmpSuffix, ")", "-printf", `%s %b %f\n`)
	if err != nil {
		return Space{}, err
	}
	for line := range strings.Lines(string(out)) {
		fields := strings.SplitN(strings.TrimSuffix(line, "\n"), " ", 3)
		if len(fields) != 3 {
			return Space{}, &Error{Op: "find", Path: root, Err: fmt.Errorf("unexpected output %q", line)}
		}
		n, err := ints(line, fields[0], fields[1])
		if err != nil {
			return Space{}, &Error{Op: "find", Path: root, Err: err}
		}
		size, held := n[0], n[1]
		if except != "" && (fields[2] == except+imageSuffix || fields[2] == except+tmpSuffix) {
			continue
		}
		sp.Volumes++
		sp.Size += size
		sp.Used += held * 512
		sp.Promised += max(0, size-held*512)
	}
	return sp, nil
}

// Entry is one volume's files right below a root: its name (a
// PersistentVolume's), whether it has a file system file, and the newest
// modification time of its files.
type Entry struct {
	Name     string
	Image    bool
	Modified time.Time
}

// Volume is the entry's volume below root, with its file system file when
// it has one.
func (e Entry) Volume(root string) Volume {
	limit := rbnv1.VolumeSizeLimitNone
	if e.Image {
		limit = rbnv1.VolumeSizeLimitLoopFile
	}
	return Layout(root, e.Name, limit)
}

// List lists the volumes below root, sorted by name: every entry right
// below it, a file system file and its temporary one counted with the
// volume they belong to.
func List(ctx context.Context, r Runner, root string) ([]Entry, error) {
	// %T@: modification time in seconds since the epoch; %f: the name.
	out, err := run(ctx, r, "find", root, "find", root, "-mindepth", "1", "-maxdepth", "1", "-printf", `%T@ %f\n`)
	if err != nil {
		return nil, err
	}
	byName := map[string]*Entry{}
	for line := range strings.Lines(string(out)) {
		stamp, name, ok := strings.Cut(strings.TrimSuffix(line, "\n"), " ")
		secs, err := strconv.ParseFloat(stamp, 64)
		if !ok || err != nil || name == "" {
			return nil, &Error{Op: "find", Path: root, Err: fmt.Errorf("unexpected output %q", line)}
		}
		image := false
		for _, suffix := range []string{tmpSuffix, imageSuffix} {
			if base, found := strings.CutSuffix(name, suffix); found {
				name, image = base, true
				break
			}
		}
		e := byName[name]
		if e == nil {
			e = &Entry{Name: name}
			byName[name] = e
		}
		e.Image = e.Image || image
		if t := time.Unix(0, int64(secs*float64(time.Second))); t.After(e.Modified) {
			e.Modified = t
		}
	}
	entries := make([]Entry, 0, len(byName))
	for _, e := range byName {
		entries = append(entries, *e)
	}
	slices.SortFunc(entries, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return entries, nil
}

// ints parses fields, words of a command's output line, as decimal
// integers; the error quotes line.
func ints(line string, fields ...string) ([]int64, error) {
	out := make([]int64, len(fields))
	for i, f := range fields {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("unexpected output %q", line)
		}
		out[i] = n
	}
	return out, nil
}
