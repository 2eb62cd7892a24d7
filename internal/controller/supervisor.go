package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// part is one long-running piece of a node runtime. run returns when ctx
// ends; returning before, with or without an error, is a failure of the
// whole runtime.
type part struct {
	name string
	run  func(ctx context.Context) error
}

// errPartEnded: a part returned nil while the runtime was meant to run.
var errPartEnded = errors.New("returned while the node was still served")

// PartError says which part of a node runtime failed, ending it.
type PartError struct {
	Part string
	Err  error
}

func (e *PartError) Error() string { return fmt.Sprintf("%s: %v", e.Part, e.Err) }
func (e *PartError) Unwrap() error { return e.Err }

// group runs parts together and owns them, as an errgroup does: the first
// part to return while the group runs ends the others (their context is
// cancelled), and Err reports it once every part has returned and the
// group's cleanup ran. Done is closed then.
type group struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	err     error
	stopped bool // Stop was called: parts returning now are not failures
}

// startGroup runs parts until ctx ends, Stop is called or one of them
// returns; cleanup runs once all have returned, before Done closes.
func startGroup(ctx context.Context, parts []part, cleanup func(err error)) *group {
	ctx, cancel := context.WithCancel(ctx)
	g := &group{cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	for _, p := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := p.run(ctx)
			g.ended(ctx, p.name, err)
		}()
	}
	go func() {
		wg.Wait()
		cancel()
		cleanup(g.Err())
		close(g.done)
	}()
	return g
}

// ended records the first failure: a part that returns before the group is
// stopped (its context still live), whatever it returns.
func (g *group) ended(ctx context.Context, name string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.err == nil && !g.stopped && ctx.Err() == nil {
		if err == nil {
			err = errPartEnded
		}
		g.err = &PartError{Part: name, Err: err}
	}
	g.cancel()
}

// Stop ends every part and waits for them and the cleanup.
func (g *group) Stop() {
	g.mu.Lock()
	g.stopped = true
	g.mu.Unlock()
	g.cancel()
	<-g.done
}

// Done is closed once every part has returned and the cleanup ran.
func (g *group) Done() <-chan struct{} { return g.done }

// Err is the failure that ended the group (a *PartError), nil when it was
// stopped or its context ended.
func (g *group) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}
