package tarstream

import (
	"archive/tar"
	"bytes"
	"compress/flate"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The directories FuzzReroot unpacks under, picked by the input's dir byte.
var fuzzDirs = []string{".", "stage", "a/b"}

// volume is where the extraction of FuzzReroot puts the rerooted archive,
// as podman's archive API is asked to (provider: loaderRoot/<volume>).
const volume = "/rbn-load/work"

// FuzzReroot feeds archives (gzip-compressed when they start with gzip's
// magic, as the transfers' tar.gz inputs are; built from a description
// when they start with "#entries", see build) through Reroot and extracts
// what it writes the way podman does inside the loader container: links
// resolved within the container's root. Properties:
//   - Reroot fails with ErrUnsafeName, ErrTooLarge or the archive's own
//     (tar, gzip, flate) error, never anything untyped;
//   - ErrTooLarge only when the input's headers do exceed the limits, and
//     success only when they do not;
//   - nothing extracted lands outside dir (or dir's parents, which Reroot
//     writes as directories), whether by name, '..', absolute names, hard
//     links or writes through a symbolic link the archive made;
//   - the bytes and entries extracted are within the limits.
func FuzzReroot(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, dirSel uint8, maxBytes uint32, maxEntries uint16) {
		dir := fuzzDirs[int(dirSel)%len(fuzzDirs)]
		// A byte bound always: without one a sparse entry declaring a
		// petabyte of holes is a petabyte of zeros, which is what the limit
		// is for.
		lim := Limits{MaxBytes: int64(maxBytes%(1<<20)) + 1, MaxEntries: int(maxEntries)}

		if bytes.HasPrefix(data, []byte(entriesPrefix)) {
			data = build(string(data))
		}
		in, err := decompressed(data)
		if err != nil {
			checkArchiveError(t, err)
			return
		}
		var out bytes.Buffer
		err = Reroot(&out, bytes.NewReader(in), dir, time.Unix(0, 0), lim)
		entries, total, over := declared(in, lim)
		switch {
		case errors.Is(err, ErrTooLarge) && !over:
			t.Fatalf("ErrTooLarge for %d entries, %d bytes under %+v: %v", entries, total, lim, err)
		case err == nil && over:
			t.Fatalf("accepted %d entries, %d bytes past %+v", entries, total, lim)
		case err != nil:
			checkArchiveError(t, err)
			return
		}
		extract(t, out.Bytes(), dir, lim)
	})
}

// entriesPrefix starts an input that describes its archive rather than
// being one: a mutated description is still an archive (tar's header
// checksums turn almost every mutated raw header into ErrHeader), so the
// fuzzer explores names, links and their order rather than tar's format.
const entriesPrefix = "#entries"

// build makes the archive a description stands for: a first line
// "#entries" ("#entries gz": gzip-compressed), then one entry a line,
// TYPE NAME [ARG]: f (regular file of ARG bytes, at most 64 KiB, all
// written), F (regular file declaring ARG bytes, none written: the archive
// ends there), d (directory), l and h (symbolic and hard link to ARG).
// Lines that say nothing valid are left out.
func build(desc string) []byte {
	lines := strings.Split(desc, "\n")
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, line := range lines[1:] {
		f := strings.Fields(line)
		if len(f) < 2 || len(f[0]) != 1 {
			continue
		}
		arg := ""
		if len(f) > 2 {
			arg = f[2]
		}
		h := &tar.Header{Name: f[1], Mode: 0o644, ModTime: time.Unix(0, 0)}
		truncated := false
		switch f[0][0] {
		case 'f':
			n, _ := strconv.Atoi(arg)
			h.Typeflag, h.Size = tar.TypeReg, int64(min(max(n, 0), 1<<16))
		case 'F':
			n, _ := strconv.ParseInt(arg, 10, 64)
			h.Typeflag, h.Size, truncated = tar.TypeReg, max(n, 0), true
		case 'd':
			h.Typeflag = tar.TypeDir
		case 'l':
			h.Typeflag, h.Linkname = tar.TypeSymlink, arg
		case 'h':
			h.Typeflag, h.Linkname = tar.TypeLink, arg
		default:
			continue
		}
		if err := tw.WriteHeader(h); err != nil {
			return b.Bytes() // tar cannot say it: the archive ends here
		}
		if truncated {
			return b.Bytes()
		}
		if _, err := tw.Write(bytes.Repeat([]byte("x"), int(h.Size))); err != nil {
			return b.Bytes()
		}
	}
	if err := tw.Close(); err != nil {
		return b.Bytes()
	}
	if !strings.Contains(lines[0], "gz") {
		return b.Bytes()
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(b.Bytes())
	_ = zw.Close()
	return z.Bytes()
}

// decompressed is data, gunzipped when it is gzip (read to the trailer,
// whose checksum is checked, as provider's inputSink does).
func decompressed(data []byte) ([]byte, error) {
	if !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		return data, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	// Committed seeds are small; a bomb past this is cut, not expanded.
	return io.ReadAll(io.LimitReader(zr, 8<<20))
}

// checkArchiveError fails unless err is one of Reroot's sentinels or an
// error of the archive's formats.
func checkArchiveError(t *testing.T, err error) {
	t.Helper()
	var corrupt flate.CorruptInputError
	for _, known := range []error{ErrUnsafeName, ErrTooLarge, tar.ErrHeader, tar.ErrFieldTooLong, tar.ErrWriteTooLong,
		io.ErrUnexpectedEOF, io.EOF, gzip.ErrHeader, gzip.ErrChecksum} {
		if errors.Is(err, known) {
			return
		}
	}
	if errors.As(err, &corrupt) {
		return
	}
	t.Fatalf("untyped error %T: %v", err, err)
}

// declared counts the input's entries, the directories their names imply
// included, and sums their declared sizes, as far as its headers read,
// and says whether they exceed lim.
func declared(in []byte, lim Limits) (entries int, total int64, over bool) {
	tr := tar.NewReader(bytes.NewReader(in))
	dirs := map[string]bool{}
	for {
		h, err := tr.Next()
		if err != nil {
			return entries, total, over
		}
		entries++
		name := path.Clean("/" + h.Name)[1:]
		for p := path.Dir(name); p != "." && !dirs[p]; p = path.Dir(p) {
			dirs[p] = true
			entries++
		}
		if h.Typeflag == tar.TypeDir {
			dirs[name] = true
		}
		total += max(h.Size, 0)
		if entries > lim.MaxEntries && lim.MaxEntries > 0 || total > lim.MaxBytes || h.Size > lim.MaxBytes {
			return entries, total, true
		}
	}
}

// extract unpacks archive into a fresh root the way podman extracts into
// the container, and checks where each entry lands.
func extract(t *testing.T, archive []byte, dir string, lim Limits) {
	t.Helper()
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, volume), 0o755); err != nil {
		t.Fatal(err)
	}
	target := path.Join(volume, dir)
	tr := tar.NewReader(bytes.NewReader(archive))
	var written int64
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Reroot wrote an unreadable archive: %v", err)
		}
		// Only a symbolic link is made in place of its name; anything else
		// at a link's name would go where the link points.
		at, ok := resolve(t, root, path.Join(volume, h.Name), h.Typeflag != tar.TypeSymlink)
		if !ok {
			return // the extraction fails there, as podman's would
		}
		if !within(at, target) && !(h.Typeflag == tar.TypeDir && within(at, volume) && within(target, at)) {
			t.Fatalf("entry %q (type %q) lands at %s, outside %s", h.Name, h.Typeflag, at, target)
		}
		host := filepath.Join(root, at)
		// Missing parents are made, as podman does. Resolved, the existing
		// ones are directories, not links: nothing here leaves root.
		if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
			return
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(host, 0o755); err != nil {
				return
			}
		case tar.TypeReg:
			_ = os.Remove(host)
			file, err := os.OpenFile(host, os.O_CREATE|os.O_EXCL|os.O_WRONLY|syscall.O_NOFOLLOW, 0o644)
			if err != nil {
				return
			}
			n, err := io.Copy(file, tr)
			file.Close()
			written += n
			if err != nil {
				t.Fatalf("Reroot wrote a short entry %q: %v", h.Name, err)
			}
		case tar.TypeSymlink:
			_ = os.Remove(host)
			if err := os.Symlink(h.Linkname, host); err != nil {
				return
			}
		case tar.TypeLink:
			// link(2) does not follow a link it is given: a hard link to a
			// symbolic link is another symbolic link.
			from, ok := resolve(t, root, path.Join(volume, h.Linkname), false)
			if !ok {
				return
			}
			if !within(from, target) {
				t.Fatalf("hard link %q to %q reaches %s, outside %s", h.Name, h.Linkname, from, target)
			}
			_ = os.Remove(host)
			if err := os.Link(filepath.Join(root, from), host); err != nil {
				return
			}
		}
	}
	if written > lim.MaxBytes {
		t.Fatalf("%d bytes extracted past the limit %d", written, lim.MaxBytes)
	}
	files := 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		at := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		if !within(at, target) && !within(target, at) {
			t.Errorf("%s was extracted outside %s", at, target)
		}
		if within(at, target) && at != target {
			files++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if lim.MaxEntries > 0 && files > lim.MaxEntries {
		t.Fatalf("%d entries extracted past the limit %d", files, lim.MaxEntries)
	}
}

// within says whether p is base or below it (both clean and absolute).
func within(p, base string) bool {
	return p == base || strings.HasPrefix(p, strings.TrimSuffix(base, "/")+"/")
}

// resolve is name (absolute, in the container) with every symbolic link
// it goes through replaced by its target, resolved as inside a chroot at
// root: ".." stops at /, absolute targets start from root. The last
// component is followed only when followLast. ok is false where the
// extraction would fail (a file as a parent, a link loop).
func resolve(t *testing.T, root, name string, followLast bool) (at string, ok bool) {
	t.Helper()
	rest := strings.Split(strings.TrimPrefix(path.Clean(name), "/"), "/")
	var cur []string
	for hops := 0; len(rest) > 0; {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		next := append(cur[:len(cur):len(cur)], c)
		fi, err := os.Lstat(filepath.Join(root, filepath.Join(next...)))
		switch {
		case err != nil:
			cur = next // does not exist yet: created there
		case fi.Mode()&fs.ModeSymlink != 0 && (len(rest) > 0 || followLast):
			if hops++; hops > 40 {
				return "", false
			}
			link, err := os.Readlink(filepath.Join(root, filepath.Join(next...)))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(link, "/") {
				cur = nil
			}
			rest = append(strings.Split(link, "/"), rest...)
		case !fi.IsDir() && len(rest) > 0:
			return "", false
		default:
			cur = next
		}
	}
	return "/" + strings.Join(cur, "/"), true
}
