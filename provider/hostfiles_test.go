package provider

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
)

// fakeEntry is a file, directory or symlink on the fake host.
type fakeEntry struct {
	kind byte // 'd', 'f' or 'l'
	data string
	link string
}

// extract writes a tar into the volume that container mounts at dest, as
// podman's archive API does (f.mu held).
func (f *fakeRuntime) extract(container, dest string, r io.Reader) error {
	base := ""
	if spec := f.specs[container]; spec != nil {
		for _, v := range spec.Volumes {
			if dest == v.Dest {
				base = f.volumes[v.Name].Mountpoint
			}
		}
	}
	return f.extractAt(base, r)
}

// extractAt writes a tar into the fake host's directory base ("": nowhere
// kept), f.mu held.
func (f *fakeRuntime) extractAt(base string, r io.Reader) error {
	tr := tar.NewReader(r)
	if f.tree == nil {
		f.tree = map[string]fakeEntry{}
	}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if base == "" {
			continue // not a volume: nothing to keep
		}
		p := path.Join(base, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			f.tree[p] = fakeEntry{kind: 'd'}
		case tar.TypeSymlink:
			f.tree[p] = fakeEntry{kind: 'l', link: h.Linkname}
		default:
			data, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			f.tree[p] = fakeEntry{kind: 'f', data: string(data)}
		}
	}
}

// resolve follows the symlinks of the fake host's tree in p (f.mu held).
func (f *fakeRuntime) resolve(p string) string {
	parts := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	cur := "/"
	for i := 0; i < len(parts); i++ {
		next := path.Join(cur, parts[i])
		if e, ok := f.tree[next]; ok && e.kind == 'l' {
			target := e.link
			if !path.IsAbs(target) {
				target = path.Join(cur, target)
			}
			rest := append(strings.Split(strings.TrimPrefix(path.Clean(target), "/"), "/"), parts[i+1:]...)
			parts, cur, i = rest, "/", -1
			continue
		}
		cur = next
	}
	return cur
}

// read is the content of the file at p, through symlinks; false when there is none.
func (f *fakeRuntime) read(p string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.tree[f.resolve(p)]
	return e.data, ok && e.kind == 'f'
}

// listing is dir's tree below it, one line per entry ("name/", "name -> target", "name=data"), sorted.
func (f *fakeRuntime) listing(dir string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for p, e := range f.tree {
		rel, ok := strings.CutPrefix(p, dir+"/")
		if !ok {
			continue
		}
		switch e.kind {
		case 'd':
			out = append(out, rel+"/")
		case 'l':
			out = append(out, rel+" -> "+e.link)
		default:
			out = append(out, rel+"="+e.data)
		}
	}
	slices.Sort(out)
	return out
}

func (f *fakeRuntime) ListDirs(_ context.Context, dirs []string) ([]DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("list-dirs %s", strings.Join(dirs, " "))
	var out []DirEntry
	for _, d := range dirs {
		for _, p := range slices.Sorted(maps.Keys(f.tree)) {
			if path.Dir(p) == d {
				out = append(out, DirEntry{Dir: d, Name: path.Base(p), Link: f.tree[p].link})
			}
		}
	}
	return out, nil
}

func (f *fakeRuntime) Rename(_ context.Context, from, to string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("rename %s %s", from, to)
	e, ok := f.tree[from]
	if !ok {
		return fmt.Errorf("mv: cannot stat '%s': No such file or directory", from)
	}
	if e.kind == 'd' {
		return errors.New("fake rename: directories are not supported")
	}
	delete(f.tree, from)
	f.tree[to] = e
	return nil
}

func (f *fakeRuntime) RemovePaths(_ context.Context, paths []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("remove-paths %s", strings.Join(paths, " "))
	for _, p := range paths {
		for q := range f.tree {
			if q == p || strings.HasPrefix(q, p+"/") {
				delete(f.tree, q)
			}
		}
	}
	return nil
}
