package sshconn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sync"
)

// Pool shares one Client, and so one SSH connection, among the users of the
// same Config: several RemoteBuildNodes may name one host. A Client runs
// from the first Acquire of its Config until the last user releases it.
// Each user keeps its own view of the host above the connection (its own
// podman client and health checks); the connection itself is one.
type Pool struct {
	mu      sync.Mutex
	entries map[string]*poolEntry
}

type poolEntry struct {
	client *Client
	refs   int
	cancel context.CancelFunc
	done   chan struct{}
}

// NewPool returns an empty pool.
func NewPool() *Pool { return &Pool{entries: map[string]*poolEntry{}} }

// Acquire returns the running Client for cfg, starting one if no user holds
// it, and the function that releases it: once every user released it, its
// connection is closed and the Client is not reused. Release waits until the
// Client stopped when it was the last user; calling it again does nothing.
// A Client started by Acquire keeps that call's Clock and Logger (which are
// not part of what identifies a connection): give a logger that names no
// single user.
func (p *Pool) Acquire(cfg Config) (*Client, func(), error) {
	cfg.setDefaults()
	key := poolKey(cfg)
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entries[key]
	if e == nil {
		c, err := New(cfg)
		if err != nil {
			return nil, nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		e = &poolEntry{client: c, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(e.done); c.Run(ctx) }()
		p.entries[key] = e
	}
	e.refs++
	var once sync.Once
	return e.client, func() { once.Do(func() { p.release(key, e) }) }, nil
}

func (p *Pool) release(key string, e *poolEntry) {
	p.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last {
		delete(p.entries, key)
	}
	p.mu.Unlock()
	if last {
		e.cancel()
		<-e.done
	}
}

// Len is the number of Clients in use: the connections the pool holds.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}

// poolKey identifies a connection: where, who, with which key and trust,
// and how it is kept. Key material enters only as a hash.
func poolKey(cfg Config) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%d\x00%s\x00%d\x00%s\x00%s\x00%s\x00%s\x00%s\x00%t\x00",
		cfg.Host, cfg.Port, cfg.User, len(cfg.PrivateKey), cfg.DialTimeout, cfg.KeepaliveInterval,
		cfg.KeepaliveTimeout, cfg.MinBackoff, cfg.MaxBackoff, cfg.Interactive)
	h.Write(cfg.PrivateKey)
	h.Write([]byte{0})
	h.Write(cfg.KnownHosts)
	return hex.EncodeToString(h.Sum(nil))
}
