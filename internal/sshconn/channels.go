package sshconn

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
)

// channelCount counts the channels open on a client's connections for its
// callers: Dial's streams (podman's API, port-forwards), the sessions of
// Output and Stream, and the connections a ListenLoopback listener
// accepted. A count that only grows is a leak: something never closed what
// it opened.
type channelCount struct{ n atomic.Int64 }

// opened counts a channel and returns what closes its count, once however
// often it is called.
func (c *channelCount) opened() func() {
	c.n.Add(1)
	var once sync.Once
	return func() { once.Do(func() { c.n.Add(-1) }) }
}

// conn counts nc as an open channel until it is closed.
func (c *channelCount) conn(nc net.Conn) net.Conn {
	return &countedConn{Conn: nc, done: c.opened()}
}

type countedConn struct {
	net.Conn
	done func()
}

func (cc *countedConn) Close() error {
	cc.done()
	return cc.Conn.Close()
}

// CloseWrite half-closes the channel (an SSH channel's EOF): exec's stdin
// ends with it, a port-forward passes its client's EOF on with it. Callers
// find it by a type assertion, which the wrapper must not hide.
func (cc *countedConn) CloseWrite() error {
	if cw, ok := cc.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// countedListener counts each accepted connection as an open channel.
type countedListener struct {
	net.Listener
	count *channelCount
}

func (l countedListener) Accept() (net.Conn, error) {
	nc, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.count.conn(nc), nil
}
