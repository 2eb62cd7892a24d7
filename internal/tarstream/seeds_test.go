package tarstream

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateSeeds = flag.Bool("update-seeds", false, "rewrite the seed corpus testdata/fuzz/FuzzReroot")

// TestWriteSeeds writes FuzzReroot's seed corpus, the archives an attacker
// would try first, with -update-seeds; without it, it checks that the
// committed corpus holds them.
func TestWriteSeeds(t *testing.T) {
	tarOf := func(entries ...entry) []byte { return archive(t, entries...) }
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		return out.Bytes()
	}
	var huge bytes.Buffer
	tw := tar.NewWriter(&huge)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1 << 40, Mode: 0o644}); err != nil {
		t.Fatal(err)
	}
	many := make([]entry, 300)
	for i := range many {
		many[i] = entry{name: fmt.Sprintf("f%03d", i), typ: tar.TypeReg}
	}
	// 4 MiB of zeros in one entry: about 4 KiB compressed.
	bomb := gz(tarOf(entry{name: "zeros", typ: tar.TypeReg, data: string(make([]byte, 4<<20))}))
	badCRC := gz(tarOf(entry{name: "a", typ: tar.TypeReg, data: "hello"}))
	badCRC[len(badCRC)-8] ^= 0xff
	type seed struct {
		name       string
		data       []byte
		dir        uint8
		maxBytes   uint32
		maxEntries uint16
	}
	const mib = 1<<20 - 1
	seeds := []seed{
		{"plain", tarOf(entry{name: "./d/", typ: tar.TypeDir}, entry{name: "d/f", typ: tar.TypeReg, data: "x"}, entry{name: "h", typ: tar.TypeLink, link: "d/f"}, entry{name: "s", typ: tar.TypeSymlink, link: "/etc"}), 1, mib, 100},
		{"dotdot", tarOf(entry{name: "../x", typ: tar.TypeReg, data: "x"}), 1, mib, 100},
		{"dotdot-inside", tarOf(entry{name: "d/../../x", typ: tar.TypeReg, data: "x"}), 2, mib, 100},
		{"absolute", tarOf(entry{name: "/etc/passwd", typ: tar.TypeReg, data: "root::0:0::/:/bin/sh\n"}), 0, mib, 100},
		{"hardlink-escape", tarOf(entry{name: "h", typ: tar.TypeLink, link: "../../etc/shadow"}), 1, mib, 100},
		{"symlink-then-file", tarOf(entry{name: "s", typ: tar.TypeSymlink, link: "/etc"}, entry{name: "s/passwd", typ: tar.TypeReg, data: "x"}), 0, mib, 100},
		{"symlink-relative-then-file", tarOf(entry{name: "s", typ: tar.TypeSymlink, link: "../../.."}, entry{name: "s/x", typ: tar.TypeReg, data: "x"}), 1, mib, 100},
		{"symlink-then-dir", tarOf(entry{name: "s", typ: tar.TypeSymlink, link: "/"}, entry{name: "s/etc/", typ: tar.TypeDir}), 2, mib, 100},
		{"symlink-then-hardlink", tarOf(entry{name: "s", typ: tar.TypeSymlink, link: "/etc"}, entry{name: "h", typ: tar.TypeLink, link: "s/shadow"}), 0, mib, 100},
		{"symlink-then-same-name", tarOf(entry{name: "s", typ: tar.TypeSymlink, link: "/etc/passwd"}, entry{name: "s", typ: tar.TypeReg, data: "x"}), 1, mib, 100},
		{"symlink-as-root", tarOf(entry{name: "./", typ: tar.TypeSymlink, link: "/etc"}, entry{name: "passwd", typ: tar.TypeReg, data: "x"}), 0, mib, 100},
		{"symlink-chain", tarOf(entry{name: "a", typ: tar.TypeSymlink, link: "b"}, entry{name: "b", typ: tar.TypeSymlink, link: "/"}, entry{name: "c", typ: tar.TypeReg, data: "x"}), 1, mib, 100},
		{"huge-declared-size", huge.Bytes(), 0, mib, 100},
		{"too-many-entries", gz(tarOf(many...)), 0, mib, 100},
		{"over-bytes", tarOf(entry{name: "a", typ: tar.TypeReg, data: "1234"}, entry{name: "b", typ: tar.TypeReg, data: "5678"}), 0, 6, 100},
		{"gzip-bomb", bomb, 0, mib, 100},
		{"gzip-zeros", gz(make([]byte, 2<<20)), 0, mib, 100},
		{"gzip-bad-crc", badCRC, 1, mib, 100},
		{"gzip-plain", gz(tarOf(entry{name: "d/", typ: tar.TypeDir}, entry{name: "d/f", typ: tar.TypeReg, data: "hello"})), 2, mib, 10},
		{"garbage", []byte("not a tar archive, just text that is long enough to be read as a header block"), 0, mib, 100},
		{"empty", nil, 0, mib, 100},
		// Descriptions (see build), which mutate into other archives.
		{"entries-plain", []byte("#entries\nd d/\nf d/f 1\nh h d/f\nl s /etc"), 1, mib, 100},
		{"entries-symlink-then-file", []byte("#entries\nl s /etc\nf s/passwd 3"), 0, mib, 100},
		{"entries-symlink-relative", []byte("#entries\nd a/\nl a/up ../..\nd a/up/x/\nf a/up/x/y 1"), 2, mib, 100},
		{"entries-symlink-then-hardlink", []byte("#entries\nl s /\nh h s/etc/shadow"), 1, mib, 100},
		{"entries-hardlink-to-symlink", []byte("#entries\nl s /etc/passwd\nh h s\nf h 2"), 0, mib, 100},
		{"entries-dotdot", []byte("#entries\nf ./a/../../x 1\nh h ../../etc/shadow\nf /abs 1"), 1, mib, 100},
		{"entries-root-link", []byte("#entries\nl . /etc\nf passwd 1"), 1, mib, 100},
		{"entries-huge-declared", []byte("#entries\nf a 10\nF huge 1099511627776"), 0, mib, 100},
		{"entries-limits", []byte("#entries gz\nf a 4\nf b 4\nd c/\nf c/d 65536"), 2, 20, 3},
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReroot")
	for _, s := range seeds {
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nbyte(%s)\nuint32(%d)\nuint16(%d)\n",
			strconv.Quote(string(s.data)), strconv.QuoteRune(rune(s.dir)), s.maxBytes, s.maxEntries)
		if len(want) > 20<<10 {
			t.Errorf("seed %s: %d bytes, more than the 20 KiB a committed seed may have", s.name, len(want))
		}
		file := filepath.Join(dir, s.name)
		if *updateSeeds {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(file)
		if err != nil || string(got) != want {
			t.Errorf("seed %s is missing or stale: run go test ./internal/tarstream -run TestWriteSeeds -update-seeds", s.name)
		}
	}
}
