package podman

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/clock"
)

func frame(stream byte, payload string) []byte {
	hdr := make([]byte, 8)
	hdr[0] = stream
	binary.BigEndian.PutUint32(hdr[4:], uint32(len(payload)))
	return append(hdr, payload...)
}

func TestDemuxTo(t *testing.T) {
	var in bytes.Buffer
	in.Write(frame(1, "out1\n"))
	in.Write(frame(2, "err1\n"))
	in.Write(frame(0, "stdin echo\n"))
	in.Write(frame(1, strings.Repeat("x", 70_000)))
	var out, errw bytes.Buffer
	if err := demuxTo(&out, &errw, &in); err != nil {
		t.Fatal(err)
	}
	if want := "out1\nstdin echo\n" + strings.Repeat("x", 70_000); out.String() != want {
		t.Errorf("stdout: %d bytes %q...", out.Len(), out.String()[:20])
	}
	if errw.String() != "err1\n" {
		t.Errorf("stderr %q", errw.String())
	}

	in.Reset()
	in.Write(frame(3, "container is not running\n"))
	if err := demuxTo(&out, &errw, &in); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("error stream: %v", err)
	}
	in.Reset()
	in.Write([]byte{9, 0, 0, 0, 0, 0, 0, 1, 'x'})
	if err := demuxTo(&out, &errw, &in); err == nil {
		t.Error("bad header accepted")
	}
	in.Reset()
	in.Write(frame(1, "truncated")[:10])
	if err := demuxTo(&out, &errw, &in); err == nil {
		t.Error("truncated frame accepted")
	}
}

// Resizes are applied in order, resizeGap apart (conmon drops the second of
// two messages it reads at once), and empty sizes are skipped.
func TestForwardResizes(t *testing.T) {
	c := &Client{cfg: Config{Logger: slog.New(slog.DiscardHandler), Clock: clock.RealClock{}}, conn: context.Background()}
	sizes := make(chan TermSize, 4)
	sizes <- TermSize{Width: 101, Height: 31}
	sizes <- TermSize{Width: 0, Height: 0}
	sizes <- TermSize{Width: 100, Height: 30}
	close(sizes)
	var got []TermSize
	var at []time.Time
	start := time.Now()
	c.forwardResizes(context.Background(), "resize", sizes, start, func(_ context.Context, sz TermSize) error {
		got = append(got, sz)
		at = append(at, time.Now())
		return nil
	})
	if want := []TermSize{{101, 31}, {100, 30}}; !slices.Equal(got, want) {
		t.Fatalf("applied %v, want %v", got, want)
	}
	if at[0].Sub(start) < resizeGap || at[1].Sub(at[0]) < resizeGap {
		t.Errorf("resizes at %v and %v after the last: closer than %v", at[0].Sub(start), at[1].Sub(at[0]), resizeGap)
	}
}
