// Package refpool shares one running thing among the users of the same key:
// the first Acquire makes it and starts it, the last release stops it. rbn
// uses it so that the RemoteBuildNodes naming one build host share its SSH
// connection and the poller that watches the host's podman.
package refpool

import (
	"context"
	"sync"
)

// Pool holds the values in use, by key. The zero Pool is not usable: call New.
type Pool[V any] struct {
	mu      sync.Mutex
	entries map[string]*entry[V]
}

type entry[V any] struct {
	value  V
	refs   int
	cancel context.CancelFunc
	done   chan struct{}
}

// New returns an empty pool.
func New[V any]() *Pool[V] { return &Pool[V]{entries: map[string]*entry[V]{}} }

// Acquire returns the value for key and the function that releases it. When
// no user holds key, it calls start, which makes the value and returns the
// function that runs it until its context ends; that runs in a goroutine of
// its own from then on. A start that fails leaves nothing behind, and its
// error is returned. Release waits for run to return when it was the last
// user; calling it again does nothing. start runs under the pool's lock: it
// must not call Acquire or a release of the same pool.
func (p *Pool[V]) Acquire(key string, start func() (V, func(context.Context), error)) (V, func(), error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.entries[key]
	if e == nil {
		v, run, err := start()
		if err != nil {
			var zero V
			return zero, nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		e = &entry[V]{value: v, cancel: cancel, done: make(chan struct{})}
		go func() { defer close(e.done); run(ctx) }()
		p.entries[key] = e
	}
	e.refs++
	var once sync.Once
	return e.value, func() { once.Do(func() { p.release(key, e) }) }, nil
}

func (p *Pool[V]) release(key string, e *entry[V]) {
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

// Values returns the values in use, in no particular order.
func (p *Pool[V]) Values() []V {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]V, 0, len(p.entries))
	for _, e := range p.entries {
		out = append(out, e.value)
	}
	return out
}

// Len is the number of values in use.
func (p *Pool[V]) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.entries)
}
