package crilog

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// A file as conmon writes it: the host's zone in the times, a line cut
// in parts, an empty line, both streams.
const file = `2026-12-07T12:00:01.000000001+01:00 stdout F first
2026-12-07T12:00:02.5+01:00 stderr F an error
2026-12-07T12:00:03+01:00 stdout P cut 
2026-12-07T12:00:03.1+01:00 stdout P in 
2026-12-07T12:00:03.2+01:00 stdout F three
2026-12-07T12:00:04+01:00 stdout F 
2026-12-07T12:00:04.5+01:00 stdout F
2026-12-07T12:00:05+01:00 stdout F:x tagged
2026-12-07T12:00:06+01:00 stdout F tty line` + "\r\n"

func TestCopy(t *testing.T) {
	since := func(s string) time.Time {
		t.Helper()
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	for _, tc := range []struct {
		name string
		in   string
		o    Options
		want string
	}{
		{name: "plain", in: file,
			want: "first\nan error\ncut in three\n\n\ntagged\ntty line\r\n"},
		{name: "timestamps before each line, not each part", in: file, o: Options{Timestamps: true},
			want: "2026-12-07T12:00:01.000000001+01:00 first\n" +
				"2026-12-07T12:00:02.5+01:00 an error\n" +
				"2026-12-07T12:00:03+01:00 cut in three\n" +
				"2026-12-07T12:00:04+01:00 \n" +
				"2026-12-07T12:00:04.5+01:00 \n" +
				"2026-12-07T12:00:05+01:00 tagged\n" +
				"2026-12-07T12:00:06+01:00 tty line\r\n"},
		{name: "since drops earlier records, the same instant kept", in: file, o: Options{Since: since("2026-12-07T11:00:03.1Z")},
			want: "in three\n\n\ntagged\ntty line\r\n"},
		{name: "since after the last record", in: file, o: Options{Since: since("2026-12-07T12:00:00Z")},
			want: ""},
		{name: "empty file", in: "", want: ""},
		{name: "a damaged line is kept as it is",
			in:   "garbage without fields\n2026-12-07T12:00:01Z stdout F ok\nts stdnothing F x\n2026-12-07T12:00:02Z stdout Q what\n",
			want: "garbage without fields\nok\nts stdnothing F x\n2026-12-07T12:00:02Z stdout Q what\n"},
		{name: "last record cut short", in: "2026-12-07T12:00:01Z stdout F done\n2026-12-07T12:00:02Z stdout F hal",
			want: "done\nhal"},
		{name: "a damaged line's time never drops it", in: "notatime stdout F kept\n", o: Options{Since: since("2026-12-07T12:00:00Z")},
			want: "kept\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []struct {
				name string
				r    io.Reader
			}{{"whole", strings.NewReader(tc.in)}, {"byte by byte", iotest.OneByteReader(strings.NewReader(tc.in))}} {
				var out bytes.Buffer
				if err := Copy(&out, r.r, tc.o); err != nil {
					t.Fatalf("%s: %v", r.name, err)
				}
				if out.String() != tc.want {
					t.Errorf("%s:\n got %q\nwant %q", r.name, out.String(), tc.want)
				}
			}
		})
	}
}

// A record longer than the buffer is copied whole, in pieces, with its
// time and its newline once; one skipped by Since is skipped whole.
func TestCopyLongRecord(t *testing.T) {
	long := strings.Repeat("x", 3*bufSize+17)
	in := "2026-12-07T12:00:01Z stdout F " + long + "\n" +
		"2026-12-07T12:00:02Z stdout P " + long + "\n" +
		"2026-12-07T12:00:03Z stdout F end\n"
	var out bytes.Buffer
	if err := Copy(&out, strings.NewReader(in), Options{Timestamps: true}); err != nil {
		t.Fatal(err)
	}
	if want := "2026-12-07T12:00:01Z " + long + "\n2026-12-07T12:00:02Z " + long + "end\n"; out.String() != want {
		t.Errorf("got %d bytes, want %d", out.Len(), len(want))
	}
	out.Reset()
	since, _ := time.Parse(time.RFC3339, "2026-12-07T12:00:02Z")
	if err := Copy(&out, strings.NewReader(in), Options{Since: since}); err != nil {
		t.Fatal(err)
	}
	if want := long + "end\n"; out.String() != want {
		t.Errorf("since: got %d bytes, want %d", out.Len(), len(want))
	}
}

// Whatever ends the reading or the writing ends Copy with it.
func TestCopyErrors(t *testing.T) {
	broken := errors.New("connection lost")
	in := io.MultiReader(strings.NewReader("2026-12-07T12:00:01Z stdout F one\n2026-12-07T12:00:02Z stdout F tw"), iotest.ErrReader(broken))
	var out bytes.Buffer
	if err := Copy(&out, in, Options{}); !errors.Is(err, broken) {
		t.Errorf("read error: %v", err)
	}
	if out.String() != "one\n" {
		t.Errorf("before the read error: %q", out.String())
	}
	full := errors.New("client gone")
	if err := Copy(failingWriter{full}, strings.NewReader(file), Options{}); !errors.Is(err, full) {
		t.Errorf("write error: %v", err)
	}
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// BenchmarkCopy reads a file of 100-byte lines, as the streams benchmark's
// log holds.
func BenchmarkCopy(b *testing.B) {
	line := "2026-12-07T12:00:01.123456789+00:00 stdout F " + strings.Repeat("y", 99) + "\n"
	in := []byte(strings.Repeat(line, 100_000))
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if err := Copy(io.Discard, bytes.NewReader(in), Options{}); err != nil {
			b.Fatal(err)
		}
	}
}
