package spdyconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"testing"
)

// recordConn records each Write it is given.
type recordConn struct {
	net.Conn
	writes [][]byte
	fail   error
}

func (c *recordConn) Write(p []byte) (int, error) {
	if c.fail != nil {
		return 0, c.fail
	}
	c.writes = append(c.writes, slices.Clone(p))
	return len(p), nil
}

// dataFrame is a SPDY/3 data frame as spdystream writes it: its three parts.
func dataFrame(stream uint32, data []byte) [][]byte {
	id := binary.BigEndian.AppendUint32(nil, stream)
	flagsLen := binary.BigEndian.AppendUint32(nil, uint32(len(data)))
	return [][]byte{id, flagsLen, data}
}

// controlFrame is a control frame of typ with a payload, header and payload
// written apart, the header itself in pieces.
func controlFrame(typ uint16, payload []byte) [][]byte {
	return [][]byte{{0x80, 3}, binary.BigEndian.AppendUint16(nil, typ), binary.BigEndian.AppendUint32(nil, uint32(len(payload))), payload}
}

func TestFramesWritesEachFrameWhole(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 32<<10)
	frames := [][][]byte{
		controlFrame(1, []byte("syn-stream headers")),
		dataFrame(1, []byte("hello")),
		dataFrame(3, big),
		dataFrame(1, nil),                   // empty: complete with its header
		controlFrame(6, []byte{0, 0, 0, 7}), // a ping
	}
	rec := &recordConn{}
	c := Frames(rec)
	var want [][]byte
	for _, parts := range frames {
		for _, p := range parts {
			if n, err := c.Write(p); err != nil || n != len(p) {
				t.Fatalf("Write(%d bytes) = %d, %v", len(p), n, err)
			}
		}
		want = append(want, bytes.Join(parts, nil))
		if len(rec.writes) != len(want) {
			t.Fatalf("after frame %d: %d writes, want %d (each frame as soon as its last byte is written)", len(want), len(rec.writes), len(want))
		}
	}
	for i := range want {
		if !bytes.Equal(rec.writes[i], want[i]) {
			t.Errorf("write %d: %d bytes, want frame %d's %d", i, len(rec.writes[i]), i, len(want[i]))
		}
	}
}

func TestFramesSplitsWritesIntoFrames(t *testing.T) {
	var all []byte
	var want [][]byte
	for i, data := range [][]byte{[]byte("one"), nil, []byte("three, longer")} {
		f := bytes.Join(dataFrame(uint32(2*i+1), data), nil)
		all = append(all, f...)
		want = append(want, f)
	}
	for _, split := range []int{len(all), 1, 5, 8, 13} { // one write, then pieces of each size
		rec := &recordConn{}
		c := Frames(rec)
		for rest := all; len(rest) > 0; {
			k := min(split, len(rest))
			if n, err := c.Write(rest[:k]); err != nil || n != k {
				t.Fatalf("split %d: Write = %d, %v", split, n, err)
			}
			rest = rest[k:]
		}
		if len(rec.writes) != len(want) {
			t.Fatalf("split %d: %d writes, want %d", split, len(rec.writes), len(want))
		}
		for i := range want {
			if !bytes.Equal(rec.writes[i], want[i]) {
				t.Errorf("split %d: write %d = %q, want %q", split, i, rec.writes[i], want[i])
			}
		}
	}
}

func TestFramesReportsAFailedWrite(t *testing.T) {
	boom := errors.New("connection reset")
	rec := &recordConn{fail: boom}
	c := Frames(rec)
	parts := dataFrame(1, []byte("data"))
	for _, p := range parts[:2] {
		if _, err := c.Write(p); err != nil {
			t.Fatalf("a header part failed before anything was written: %v", err)
		}
	}
	if n, err := c.Write(parts[2]); !errors.Is(err, boom) || n != 0 {
		t.Errorf("Write of the frame's last part = %d, %v; want 0, the connection's error", n, err)
	}
}
