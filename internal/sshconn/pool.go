package sshconn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/remote-build-nodes/rbn/internal/refpool"
)

// Pool shares one Client, and so one SSH connection, among the users of the
// same Config: several RemoteBuildNodes may name one host. A Client runs
// from the first Acquire of its Config until the last user releases it.
// Each user keeps its own view of the host above the connection; the
// connection itself is one.
type Pool struct {
	clients *refpool.Pool[*Client]
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{clients: refpool.New[*Client]()} }

// Acquire returns the running Client for cfg, starting one if no user holds
// it, and the function that releases it: once every user released it, its
// connection is closed and the Client is not reused. Release waits until the
// Client stopped when it was the last user; calling it again does nothing.
// A Client started by Acquire keeps that call's Clock and Logger (which are
// not part of what identifies a connection): give a logger that names no
// single user.
func (p *Pool) Acquire(cfg Config) (*Client, func(), error) {
	return p.clients.Acquire(Key(cfg), func() (*Client, func(context.Context), error) {
		c, err := New(cfg)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Run, nil
	})
}

// Clients returns the Clients in use (for their State: metrics).
func (p *Pool) Clients() []*Client { return p.clients.Values() }

// Len is the number of Clients in use: the connections the pool holds.
func (p *Pool) Len() int { return p.clients.Len() }

// Key identifies a connection: where, who, with which key and trust, and
// how it is kept (defaults applied). Key material enters only as a hash.
func Key(cfg Config) string {
	cfg.setDefaults()
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00%d\x00%s\x00%s\x00%s\x00%s\x00%s\x00%t\x00",
		cfg.Host, cfg.Port, cfg.User, len(cfg.PrivateKey), cfg.DialTimeout, cfg.KeepaliveInterval,
		cfg.KeepaliveTimeout, cfg.MinBackoff, cfg.MaxBackoff, cfg.Interactive)
	h.Write(cfg.PrivateKey)
	h.Write([]byte{0})
	h.Write(cfg.KnownHosts)
	return hex.EncodeToString(h.Sum(nil))
}
