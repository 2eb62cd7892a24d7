package kubeletapi

import (
	"bufio"
	"io"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestParseLogOptions(t *testing.T) {
	for _, tc := range []struct {
		query   string
		tail    int
		check   func(t *testing.T, q string, tail int)
		wantErr bool
	}{
		{query: "", tail: -1},
		{query: "tailLines=0", tail: 0},
		{query: "tailLines=7&follow=true&timestamps=1&previous=false&limitBytes=100&sinceSeconds=5", tail: 7},
		{query: "sinceTime=2026-01-02T03:04:05Z", tail: -1},
		{query: "tailLines=-1", wantErr: true},
		{query: "tailLines=x", wantErr: true},
		{query: "limitBytes=0", wantErr: true},
		{query: "sinceSeconds=0", wantErr: true},
		{query: "sinceSeconds=5&sinceTime=2026-01-02T03:04:05Z", wantErr: true},
		{query: "sinceTime=yesterday", wantErr: true},
		{query: "follow=maybe", wantErr: true},
	} {
		q, _ := url.ParseQuery(tc.query)
		opts, tail, err := parseLogOptions(q)
		if (err != nil) != tc.wantErr {
			t.Errorf("%q: err %v, want error %v", tc.query, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if tail != tc.tail {
			t.Errorf("%q: tail %d, want %d", tc.query, tail, tc.tail)
		}
		if tc.query == "tailLines=7&follow=true&timestamps=1&previous=false&limitBytes=100&sinceSeconds=5" &&
			(!opts.Follow || !opts.Timestamps || opts.Previous || opts.LimitBytes != 100 || opts.SinceSeconds != 5 || opts.Tail != 7) {
			t.Errorf("%q: %+v", tc.query, opts)
		}
		if strings.HasPrefix(tc.query, "sinceTime") && !opts.SinceTime.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
			t.Errorf("%q: sinceTime %v", tc.query, opts.SinceTime)
		}
	}
}

func TestTimestampsRewrittenAsKubelet(t *testing.T) {
	in := "2026-01-02T03:04:05+02:00 first line\n" +
		"2026-01-02T01:04:05.123456789Z second\n" +
		"not a timestamp line\n" +
		"2026-01-02T01:04:06Z " + strings.Repeat("x", 100) + "\n" +
		"2026-01-02T01:04:07Z no newline at the end"
	want := "2026-01-02T01:04:05Z first line\n" +
		"2026-01-02T01:04:05.123456789Z second\n" +
		"not a timestamp line\n" +
		"2026-01-02T01:04:06Z " + strings.Repeat("x", 100) + "\n" +
		"2026-01-02T01:04:07Z no newline at the end"
	// A reader smaller than a line, fed a byte at a time: lines come in pieces.
	r := &timestampWriter{r: newSmallReader(iotest.OneByteReader(strings.NewReader(in))), atStart: true}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestCopyFlushingCopiesEverything(t *testing.T) {
	data := strings.Repeat("0123456789abcdef", 300_000) // 4.8 MB
	rec := httptest.NewRecorder()
	if err := copyFlushing(rec, iotest.HalfReader(strings.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != data {
		t.Errorf("copied %d bytes, want %d", rec.Body.Len(), len(data))
	}
	if !rec.Flushed {
		t.Error("never flushed")
	}
}

// newSmallReader buffers less than a long line (but more than a
// timestamp, as the 32 KiB of production do), to exercise partial lines.
func newSmallReader(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64) }
