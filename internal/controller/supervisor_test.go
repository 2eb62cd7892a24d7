package controller

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// blocking is a part that runs until its context ends, then returns ret
// (a controller returns ctx.Err(), say); exited is closed once it returned.
func blocking(name string, ret error) (part, chan struct{}) {
	exited := make(chan struct{})
	return part{name: name, run: func(ctx context.Context) error {
		defer close(exited)
		<-ctx.Done()
		return ret
	}}, exited
}

// cleanups records the calls of a group's cleanup.
type cleanups struct {
	mu   sync.Mutex
	errs []error
}

func (c *cleanups) record(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err)
}

func (c *cleanups) calls() []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.errs
}

// waitDone waits for the group to end, with a deadline.
func waitDone(t *testing.T, g *group) {
	t.Helper()
	select {
	case <-g.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the group did not end: a part is still running")
	}
}

// assertExited checks that every part had returned when Done closed: no
// goroutine of the group is left behind.
func assertExited(t *testing.T, exited ...chan struct{}) {
	t.Helper()
	for i, ch := range exited {
		select {
		case <-ch:
		default:
			t.Errorf("part %d still runs after Done", i)
		}
	}
}

func TestGroupPartFailureEndsTheGroup(t *testing.T) {
	boom := errors.New("lease update: forbidden")
	fail := make(chan struct{})
	a, aExited := blocking("node provider", nil)
	b, bExited := blocking("pod controller", context.Canceled)
	failing := part{name: "node controller", run: func(context.Context) error { <-fail; return boom }}
	var cl cleanups
	g := startGroup(context.Background(), []part{a, b, failing}, cl.record)

	select {
	case <-g.Done():
		t.Fatal("the group ended before any part did")
	default:
	}
	close(fail)
	waitDone(t, g)
	assertExited(t, aExited, bExited)
	var pe *PartError
	if err := g.Err(); !errors.As(err, &pe) || pe.Part != "node controller" || !errors.Is(err, boom) {
		t.Fatalf("Err = %v, want the node controller's failure", g.Err())
	}
	if calls := cl.calls(); len(calls) != 1 || calls[0] != g.Err() {
		t.Errorf("cleanup calls %v, want one with the failure", calls)
	}
}

// A part returning nil while the runtime runs ended without saying why:
// that is a failure too.
func TestGroupPartReturningEarlyIsAFailure(t *testing.T) {
	a, aExited := blocking("host watch", nil)
	early := part{name: "pods", run: func(context.Context) error { return nil }}
	var cl cleanups
	g := startGroup(context.Background(), []part{a, early}, cl.record)
	waitDone(t, g)
	assertExited(t, aExited)
	var pe *PartError
	if err := g.Err(); !errors.As(err, &pe) || pe.Part != "pods" || !errors.Is(err, errPartEnded) {
		t.Fatalf("Err = %v, want pods ended early", err)
	}
	if len(cl.calls()) != 1 {
		t.Errorf("cleanup ran %d times, want once", len(cl.calls()))
	}
}

// Stopped by its owner, or by the end of its context, the group did not
// fail, whatever its parts return as they end.
func TestGroupStopIsNotAFailure(t *testing.T) {
	for _, how := range []string{"Stop", "context"} {
		t.Run(how, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			a, aExited := blocking("node controller", context.Canceled)
			b, bExited := blocking("pods", nil)
			var cl cleanups
			g := startGroup(ctx, []part{a, b}, cl.record)
			if how == "Stop" {
				g.Stop()
			} else {
				cancel()
				waitDone(t, g)
			}
			assertExited(t, aExited, bExited)
			if err := g.Err(); err != nil {
				t.Errorf("Err = %v, want nil", err)
			}
			if calls := cl.calls(); len(calls) != 1 || calls[0] != nil {
				t.Errorf("cleanup calls %v, want one without error", calls)
			}
		})
	}
}
