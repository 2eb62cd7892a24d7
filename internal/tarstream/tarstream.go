// Package tarstream rewrites tar streams on the fly, for moving files in and
// out of containers through podman's archive API without a local copy:
// wrapping one file in an archive, moving an archive's entries under a
// directory (refusing names that would escape it), and taking a path's
// content back out of the archive podman returns for it.
package tarstream

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"
)

// ErrUnsafeName is an archive entry whose name or link leaves its directory.
var ErrUnsafeName = errors.New("unsafe name in archive")

// ErrNotRegular is a path that was expected to be a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge is an archive that would unpack to more than its Limits.
var ErrTooLarge = errors.New("archive too large")

// Limits bound what an archive may unpack to, against archive (and gzip)
// bombs: the sum of its entries' sizes, and its number of entries, the
// directories their names imply counted too (one entry a/b/.../z makes
// every directory on its way). Zero: no bound.
type Limits struct {
	MaxBytes   int64
	MaxEntries int
}

// parents writes directory entries for every parent of name, outermost first.
func parents(tw *tar.Writer, name string, now time.Time) error {
	var dirs []string
	for d := path.Dir(name); d != "." && d != "/"; d = path.Dir(d) {
		dirs = append(dirs, d)
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dirs[i] + "/", Mode: 0o755, ModTime: now}); err != nil {
			return err
		}
	}
	return nil
}

// WrapFile writes to w an archive of one regular file, name (relative,
// clean), with its parent directories and size bytes read from r.
func WrapFile(w io.Writer, name string, r io.Reader, size int64, now time.Time) error {
	tw := tar.NewWriter(w)
	if err := parents(tw, name, now); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: now}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, r, size); err != nil {
		return fmt.Errorf("copy %s: %w", name, err)
	}
	return tw.Close()
}

// safeJoin puts an archive entry's name under dir, or refuses it.
func safeJoin(dir, name string) (string, error) {
	clean := path.Clean("/" + name)
	if name == "" || strings.HasPrefix(name, "/") || strings.Split(path.Clean(name), "/")[0] == ".." {
		return "", fmt.Errorf("%w: %q", ErrUnsafeName, name)
	}
	return path.Join(dir, clean[1:]), nil
}

// throughLink says whether name, or one of its parents, is a symbolic link
// an earlier entry made (links holds their names).
func throughLink(links map[string]bool, name string) bool {
	if len(links) == 0 {
		return false
	}
	for p := name; p != "." && p != "/"; p = path.Dir(p) {
		if links[p] {
			return true
		}
	}
	return false
}

// Reroot copies the archive r to w with every entry moved under dir
// (relative, clean; "." for none), preceded by dir's parents and dir
// itself. Absolute names, names with "..", and hard links that leave the
// archive are refused; symbolic links are kept as they are (podman resolves
// them inside the container when it extracts), but no later entry may be
// written at or through one, nor hard-link through one (a hard link to one
// is one more): a link to / and a file under it would put the file
// wherever the link points, out of dir.
// Entries are counted, and their sizes added up as their headers declare
// them, before any content is copied: past lim, ErrTooLarge.
func Reroot(w io.Writer, r io.Reader, dir string, now time.Time, lim Limits) error {
	tw := tar.NewWriter(w)
	if dir != "." {
		if err := parents(tw, dir+"/x", now); err != nil {
			return err
		}
	}
	tr := tar.NewReader(r)
	var total int64
	links := map[string]bool{}
	// dirs: the directories the entries so far make, named or implied;
	// kept only under an entry bound, which bounds them too.
	dirs := map[string]bool{}
	for entries := 1; ; entries++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if lim.MaxEntries > 0 && entries > lim.MaxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, lim.MaxEntries)
		}
		if total += max(h.Size, 0); lim.MaxBytes > 0 && (total > lim.MaxBytes || h.Size > lim.MaxBytes) {
			return fmt.Errorf("%w: more than %d bytes unpacked (at %s)", ErrTooLarge, lim.MaxBytes, h.Name)
		}
		if h.Name, err = safeJoin(dir, h.Name); err != nil {
			return err
		}
		if lim.MaxEntries > 0 {
			for p := path.Dir(h.Name); p != "." && p != "/" && p != path.Clean(dir) && !dirs[p]; p = path.Dir(p) {
				dirs[p] = true
				entries++
			}
			if h.Typeflag == tar.TypeDir {
				dirs[h.Name] = true
			}
			if entries > lim.MaxEntries {
				return fmt.Errorf("%w: more than %d entries (with the directories their names imply, at %s)", ErrTooLarge, lim.MaxEntries, h.Name)
			}
		}
		if h.Name == path.Clean(dir) && h.Typeflag != tar.TypeDir {
			// Only a directory may stand for dir itself: a link there would
			// make every later entry go through it.
			return fmt.Errorf("%w: %q replaces the directory it is unpacked into", ErrUnsafeName, h.Name)
		}
		if throughLink(links, h.Name) {
			return fmt.Errorf("%w: %q is written through a symbolic link of the archive", ErrUnsafeName, h.Name)
		}
		if h.Typeflag == tar.TypeLink {
			if h.Linkname, err = safeJoin(dir, h.Linkname); err != nil {
				return err
			}
			if throughLink(links, path.Dir(h.Linkname)) {
				return fmt.Errorf("%w: hard link %q goes through a symbolic link of the archive", ErrUnsafeName, h.Linkname)
			}
		}
		// A hard link to a symbolic link is one more symbolic link.
		if h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink && links[h.Linkname] {
			links[h.Name] = true
		}
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy %s: %w", h.Name, err)
		}
	}
}

// stripRoot removes the first component of name: podman's archive of a
// path names its entries after the path's base name.
func stripRoot(name string) string {
	name = strings.TrimPrefix(name, "./")
	if _, rest, ok := strings.Cut(strings.TrimSuffix(name, "/"), "/"); ok {
		return rest
	}
	return ""
}

// SingleFile reads podman's archive of one path and returns the content of
// that path, which must be a regular file, and its size. The reader is valid
// until r is closed.
func SingleFile(r io.Reader) (io.Reader, int64, error) {
	tr := tar.NewReader(r)
	h, err := tr.Next()
	if err != nil {
		return nil, 0, fmt.Errorf("read archive: %w", err)
	}
	if h.Typeflag != tar.TypeReg {
		kind := "a directory"
		if h.Typeflag != tar.TypeDir {
			kind = fmt.Sprintf("of tar type %q", h.Typeflag)
		}
		return nil, 0, fmt.Errorf("%w: %s is %s", ErrNotRegular, strings.TrimSuffix(h.Name, "/"), kind)
	}
	return tr, h.Size, nil
}

// Contents copies podman's archive of one path to w as an archive of the
// path's contents: a directory's entries named relative to it (the
// directory itself left out), a file under its own name.
func Contents(w io.Writer, r io.Reader) error {
	tw := tar.NewWriter(w)
	tr := tar.NewReader(r)
	for first := true; ; first = false {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return tw.Close()
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		if !(first && h.Typeflag != tar.TypeDir) {
			name := stripRoot(h.Name)
			if name == "" {
				continue // the directory itself
			}
			if h.Typeflag == tar.TypeDir {
				name += "/"
			}
			h.Name = name
			if h.Typeflag == tar.TypeLink {
				h.Linkname = stripRoot(h.Linkname)
			}
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return fmt.Errorf("copy %s: %w", h.Name, err)
		}
	}
}
