// Package connrelay relays bytes between two connections both ways, passing
// half-closes on: rbn-forward's relay in a pod and rbn-kubelet's relay to
// cluster Services are the two ends of one path and behave alike.
package connrelay

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Side is one end of a relay.
type Side struct {
	Conn net.Conn
	// Reader reads what this side sends; nil: Conn itself. (A
	// bufio.Reader over Conn that holds bytes read with a header.)
	Reader io.Reader
	// Written, when set, is told of the bytes written to Conn.
	Written func(n int)
}

func (s Side) reader() io.Reader {
	if s.Reader != nil {
		return s.Reader
	}
	return s.Conn
}

// Relay copies a to b and b to a until both directions ended, or one
// failed, then closes both connections. A side's EOF is passed on as a
// half-close (CloseWrite) of the other, so that a client that shuts its
// writing side after a request still gets the answer; when the other
// cannot half-close, both are closed, as nothing else would tell its peer
// that no more comes. An error in either direction closes both
// at once: the other could not complete anyway. It returns the bytes
// copied each way and the first error.
func Relay(a, b Side) (aToB, bToA int64, err error) {
	closeBoth := sync.OnceFunc(func() {
		_ = a.Conn.Close()
		_ = b.Conn.Close()
	})
	defer closeBoth()
	type result struct {
		n   int64
		err error
	}
	toB, toA := make(chan result, 1), make(chan result, 1)
	closed := false
	go func() { n, err := copyHalf(b, a.reader()); toB <- result{n, err} }()
	go func() { n, err := copyHalf(a, b.reader()); toA <- result{n, err} }()
	for range 2 {
		var r result
		select {
		case r = <-toB:
			aToB = r.n
		case r = <-toA:
			bToA = r.n
		}
		if r.err != nil && !closed {
			// The first failure closes both: the other direction's
			// error that follows is its consequence.
			closed = true
			closeBoth()
			if r.err != errNoHalfClose {
				err = r.err
			}
		}
	}
	return aToB, bToA, err
}

// errNoHalfClose ends a direction whose destination cannot half-close: both
// connections are closed, and the relay ends without an error.
var errNoHalfClose = errors.New("connection cannot half-close")

// copyHalf copies src to dst until src's EOF, then ends dst's sending
// direction (or closes dst when it cannot half-close).
func copyHalf(dst Side, src io.Reader) (int64, error) {
	var w io.Writer = dst.Conn
	if dst.Written != nil {
		w = counted{dst.Conn, dst.Written}
	}
	n, err := io.Copy(w, src)
	if err != nil {
		return n, err
	}
	if cw, ok := dst.Conn.(interface{ CloseWrite() error }); ok {
		return n, cw.CloseWrite()
	}
	return n, errNoHalfClose
}

type counted struct {
	w     io.Writer
	added func(int)
}

func (c counted) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.added(n)
	return n, err
}
