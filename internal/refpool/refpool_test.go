package refpool

import (
	"context"
	"errors"
	"testing"
)

// thing counts its starts and records whether it still runs.
type thing struct {
	running chan struct{} // closed when run starts
	stopped chan struct{} // closed when run returns
}

func starter(starts *int) func() (*thing, func(context.Context), error) {
	return func() (*thing, func(context.Context), error) {
		*starts++
		t := &thing{running: make(chan struct{}), stopped: make(chan struct{})}
		return t, func(ctx context.Context) {
			close(t.running)
			<-ctx.Done()
			close(t.stopped)
		}, nil
	}
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestAcquireSharesOneValuePerKey(t *testing.T) {
	p := New[*thing]()
	starts := 0
	a, releaseA, err := p.Acquire("host-1", starter(&starts))
	if err != nil {
		t.Fatal(err)
	}
	b, releaseB, err := p.Acquire("host-1", starter(&starts))
	if err != nil {
		t.Fatal(err)
	}
	other, releaseOther, err := p.Acquire("host-2", starter(&starts))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatal("two users of one key got different values")
	}
	if a == other {
		t.Fatal("two keys share a value")
	}
	if starts != 2 || p.Len() != 2 {
		t.Fatalf("starts = %d, Len = %d; want 2 and 2", starts, p.Len())
	}
	<-a.running

	releaseA()
	releaseA() // a second call of one release does nothing
	if isClosed(a.stopped) {
		t.Fatal("released by one of two users: stopped")
	}
	releaseB()
	// The last release returns once run has returned.
	if !isClosed(a.stopped) {
		t.Fatal("last release returned before run stopped")
	}
	if p.Len() != 1 {
		t.Fatalf("Len = %d after releasing host-1, want 1", p.Len())
	}

	// A key released by all is started anew.
	c, releaseC, err := p.Acquire("host-1", starter(&starts))
	if err != nil {
		t.Fatal(err)
	}
	if c == a || starts != 3 {
		t.Fatalf("reacquired key reused a stopped value (starts = %d)", starts)
	}
	releaseC()
	releaseOther()
	if p.Len() != 0 {
		t.Fatalf("Len = %d after every release, want 0", p.Len())
	}
}

func TestAcquireFailedStartLeavesNothing(t *testing.T) {
	p := New[*thing]()
	boom := errors.New("boom")
	_, release, err := p.Acquire("k", func() (*thing, func(context.Context), error) { return nil, nil, boom })
	if !errors.Is(err, boom) || release != nil {
		t.Fatalf("Acquire = (release %v, %v), want nil and boom", release != nil, err)
	}
	if p.Len() != 0 {
		t.Fatalf("Len = %d after a failed start, want 0", p.Len())
	}
	starts := 0
	_, release, err = p.Acquire("k", starter(&starts))
	if err != nil || starts != 1 {
		t.Fatalf("Acquire after a failed start: err %v, starts %d", err, starts)
	}
	release()
}
