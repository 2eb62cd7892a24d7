package tarstream

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

type entry struct {
	name, link string
	typ        byte
	data       string
}

func archive(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Size: int64(len(e.data)), Mode: 0o644}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func list(t *testing.T, data []byte) []string {
	t.Helper()
	var out []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		s := h.Name
		if len(body) > 0 {
			s += "=" + string(body)
		}
		if h.Linkname != "" {
			s += "->" + h.Linkname
		}
		out = append(out, s)
	}
}

func TestWrapFile(t *testing.T) {
	var b bytes.Buffer
	if err := WrapFile(&b, "a/b/c.txt", strings.NewReader("hello"), 5, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if got, want := list(t, b.Bytes()), []string{"a/", "a/b/", "a/b/c.txt=hello"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if err := WrapFile(io.Discard, "x", strings.NewReader("shor"), 5, time.Unix(0, 0)); err == nil {
		t.Error("a short body was not refused")
	}
}

func TestReroot(t *testing.T) {
	in := archive(t, entry{name: "./d/", typ: tar.TypeDir}, entry{name: "d/f", typ: tar.TypeReg, data: "x"}, entry{name: "h", typ: tar.TypeLink, link: "d/f"}, entry{name: "s", typ: tar.TypeSymlink, link: "/etc"})
	for dir, want := range map[string][]string{
		".":     {"d/", "d/f=x", "h->d/f", "s->/etc"},
		"stage": {"stage/", "stage/d/", "stage/d/f=x", "stage/h->stage/d/f", "stage/s->/etc"},
	} {
		var b bytes.Buffer
		if err := Reroot(&b, bytes.NewReader(in), dir, time.Unix(0, 0), Limits{}); err != nil {
			t.Fatal(err)
		}
		if got := list(t, b.Bytes()); !slices.Equal(got, want) {
			t.Errorf("under %s: got %v, want %v", dir, got, want)
		}
	}
	for _, bad := range []entry{{name: "../x", typ: tar.TypeReg}, {name: "/etc/passwd", typ: tar.TypeReg}, {name: "h", typ: tar.TypeLink, link: "../../etc/shadow"}} {
		if err := Reroot(io.Discard, bytes.NewReader(archive(t, bad)), "d", time.Unix(0, 0), Limits{}); !errors.Is(err, ErrUnsafeName) {
			t.Errorf("%+v: got %v, want ErrUnsafeName", bad, err)
		}
	}
	// A link the archive makes is never a way out: nothing is written or
	// hard-linked through it, nor put in its place, nor in the place of dir.
	for _, bad := range [][]entry{
		{{name: "s", typ: tar.TypeSymlink, link: "/etc"}, {name: "s/passwd", typ: tar.TypeReg}},
		{{name: "s", typ: tar.TypeSymlink, link: "../.."}, {name: "s/x/", typ: tar.TypeDir}},
		{{name: "s", typ: tar.TypeSymlink, link: "/etc"}, {name: "h", typ: tar.TypeLink, link: "s/shadow"}},
		{{name: "s", typ: tar.TypeSymlink, link: "/etc/passwd"}, {name: "s", typ: tar.TypeReg}},
		{{name: "./", typ: tar.TypeSymlink, link: "/etc"}},
		{{name: "s", typ: tar.TypeSymlink, link: "/etc"}, {name: "h", typ: tar.TypeLink, link: "s"}, {name: "h/passwd", typ: tar.TypeReg}},
	} {
		if err := Reroot(io.Discard, bytes.NewReader(archive(t, bad...)), "d", time.Unix(0, 0), Limits{}); !errors.Is(err, ErrUnsafeName) {
			t.Errorf("%+v: got %v, want ErrUnsafeName", bad, err)
		}
	}
	if err := Reroot(io.Discard, strings.NewReader("not a tar archive, just text that is long enough to be read as a header block"), ".", time.Unix(0, 0), Limits{}); err == nil {
		t.Error("garbage was taken for an archive")
	}
}

// An archive past its limits is refused as soon as a header says so,
// before the content is read: a bomb declaring a huge entry costs nothing.
func TestRerootLimits(t *testing.T) {
	three := archive(t, entry{name: "a", typ: tar.TypeReg, data: "1234"}, entry{name: "b", typ: tar.TypeReg, data: "5678"}, entry{name: "c/", typ: tar.TypeDir})
	for _, tc := range []struct {
		lim  Limits
		fits bool
	}{
		{Limits{}, true},
		{Limits{MaxBytes: 8, MaxEntries: 3}, true},
		{Limits{MaxBytes: 7}, false},
		{Limits{MaxEntries: 2}, false},
	} {
		err := Reroot(io.Discard, bytes.NewReader(three), ".", time.Unix(0, 0), tc.lim)
		if tc.fits != (err == nil) || (!tc.fits && !errors.Is(err, ErrTooLarge)) {
			t.Errorf("%+v: %v, want fits=%v (or ErrTooLarge)", tc.lim, err, tc.fits)
		}
	}
	// One entry deep down makes every directory on its way: each counts.
	deep := archive(t, entry{name: "a/b/c/d", typ: tar.TypeReg}, entry{name: "a/b/e", typ: tar.TypeReg})
	for _, tc := range []struct {
		lim  Limits
		fits bool
	}{
		{Limits{MaxEntries: 5}, true},
		{Limits{MaxEntries: 4}, false},
	} {
		err := Reroot(io.Discard, bytes.NewReader(deep), "stage", time.Unix(0, 0), tc.lim)
		if tc.fits != (err == nil) || (!tc.fits && !errors.Is(err, ErrTooLarge)) {
			t.Errorf("%+v: %v, want fits=%v (or ErrTooLarge)", tc.lim, err, tc.fits)
		}
	}
	var bomb bytes.Buffer
	tw := tar.NewWriter(&bomb)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1 << 40, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	// No content follows: reading it would fail, refusing it must not read it.
	if err := Reroot(io.Discard, bytes.NewReader(bomb.Bytes()), ".", time.Unix(0, 0), Limits{MaxBytes: 1 << 30}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("an entry declaring 1 TiB under a 1 GiB limit: %v, want ErrTooLarge", err)
	}
}

func TestSingleFileAndContents(t *testing.T) {
	file := archive(t, entry{name: "image.raw", typ: tar.TypeReg, data: "disk"})
	r, size, err := SingleFile(bytes.NewReader(file))
	if err != nil || size != 4 {
		t.Fatal(size, err)
	}
	if b, _ := io.ReadAll(r); string(b) != "disk" {
		t.Errorf("content %q", b)
	}
	dir := archive(t, entry{name: "out/", typ: tar.TypeDir}, entry{name: "out/a", typ: tar.TypeReg, data: "1"}, entry{name: "out/sub/", typ: tar.TypeDir}, entry{name: "out/l", typ: tar.TypeLink, link: "out/a"})
	if _, _, err := SingleFile(bytes.NewReader(dir)); !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), "out is a directory") {
		t.Errorf("directory as file: %v", err)
	}
	for in, want := range map[string][]string{string(dir): {"a=1", "sub/", "l->a"}, string(file): {"image.raw=disk"}} {
		var b bytes.Buffer
		if err := Contents(&b, strings.NewReader(in)); err != nil {
			t.Fatal(err)
		}
		if got := list(t, b.Bytes()); !slices.Equal(got, want) {
			t.Errorf("got %v, want %v", got, want)
		}
	}
}
