// Package spdyconn makes the connections rbn speaks SPDY/3 on (the
// Kubernetes port-forward, exec and attach protocol, moby/spdystream) write
// each frame whole, and dials such a connection for one upgrade at a time.
//
// spdystream writes a data frame with three writes (its stream ID, its flags
// and length, its data) and a control frame with more. On a TLS connection
// each write is a TLS record of its own and a system call of its own, and
// on the other side at least one read: a stream of 14 KiB frames was three
// records and three system calls per frame (measured on the Service path
// of issue #14, docs/services.md). Written whole, a frame is one record up
// to TLS's 16 KiB and one system call.
package spdyconn

import (
	"encoding/binary"
	"net"
	"sync"
)

// frameHeaderLen is the length of every SPDY/3 frame's header: a control
// frame's (control bit, version, type, flags, length) and a data frame's
// (stream ID, flags, length) alike, the length (of what follows the header)
// in its last 3 bytes.
const frameHeaderLen = 8

// Frames wraps conn so that what is written to it leaves in whole SPDY/3
// frames, one Write of conn each. A frame's bytes are held until its last
// one is written, and written at once then: the writer's last write of a
// frame sends it, so nothing waits for a next write. The writer must write
// frames one after the other (spdystream does, under its write lock) and
// nothing but frames. Reads, Close and the rest are conn's.
func Frames(conn net.Conn) net.Conn {
	return &framesConn{Conn: conn}
}

type framesConn struct {
	net.Conn
	mu    sync.Mutex
	frame []byte // the frame being written, up to its last byte
}

// maxKept bounds the buffer kept between frames: one that grew for a larger
// frame is let go.
const maxKept = 256 << 10

// Write takes p into the frames being written and writes each frame it
// completes. n is how much of p was written or held: on an error it counts
// no byte of the frame that failed.
func (c *framesConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	taken := 0
	for taken < len(p) {
		if len(c.frame) == 0 && len(p)-taken >= frameHeaderLen {
			// A whole frame in p, from its start: written from p, uncopied.
			if n := frameHeaderLen + frameLength(p[taken:]); len(p)-taken >= n {
				if _, err := c.Conn.Write(p[taken : taken+n]); err != nil {
					return taken, err
				}
				taken += n
				continue
			}
		}
		need := frameHeaderLen - len(c.frame) // the header's rest, else the frame's
		if need <= 0 {
			need = frameHeaderLen + frameLength(c.frame) - len(c.frame)
		}
		k := min(need, len(p)-taken)
		c.frame = append(c.frame, p[taken:taken+k]...)
		taken += k
		if len(c.frame) >= frameHeaderLen && len(c.frame) == frameHeaderLen+frameLength(c.frame) {
			_, err := c.Conn.Write(c.frame)
			kept := len(c.frame)
			c.frame = c.frame[:0]
			if cap(c.frame) > maxKept {
				c.frame = nil
			}
			if err != nil {
				return max(0, taken-kept), err
			}
		}
	}
	return taken, nil
}

// frameLength is the length field of the frame header that b starts with.
func frameLength(b []byte) int {
	return int(binary.BigEndian.Uint32(b[4:frameHeaderLen]) & 0xffffff)
}
