package kubeletapi

import (
	"errors"
	"net"
	"sync"
	"testing"
)

// fakeListener is a listener that was "bound" to a port.
type fakeListener struct {
	net.Listener
	port   int32
	mu     *sync.Mutex
	closed map[int32]bool
}

func (f *fakeListener) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed[f.port] = true
	return nil
}

func fakePorts(first, last int32, taken ...int32) (*nodePorts, map[int32]bool) {
	var mu sync.Mutex
	closed := map[int32]bool{}
	busy := map[int32]bool{}
	for _, p := range taken {
		busy[p] = true
	}
	return newNodePorts(first, last, func(port int32) (net.Listener, error) {
		if busy[port] {
			return nil, errors.New("address already in use")
		}
		return &fakeListener{port: port, mu: &mu, closed: closed}, nil
	}, nil), closed
}

func TestNodePorts(t *testing.T) {
	p, closed := fakePorts(100, 104, 101) // 101 is held by another process
	acquire := func(node string, preferred int32) int32 {
		t.Helper()
		l, _, err := p.acquire(node, preferred)
		if err != nil {
			t.Fatalf("acquire %s: %v", node, err)
		}
		if l.node != node {
			t.Fatalf("listener of %s says node %s", node, l.node)
		}
		return l.port
	}
	if got := acquire("a", 0); got != 100 {
		t.Errorf("a: port %d, want the lowest free 100", got)
	}
	if got := acquire("b", 0); got != 102 {
		t.Errorf("b: port %d, want 102 (101 is in use elsewhere)", got)
	}
	if got := acquire("c", 104); got != 104 {
		t.Errorf("c: port %d, want its preferred 104", got)
	}
	if got := acquire("d", 100); got != 103 {
		t.Errorf("d: port %d, want 103 (its preferred 100 is a's)", got)
	}
	if got := acquire("a", 103); got != 100 {
		t.Errorf("a again: port %d, want its own 100", got)
	}
	if _, fresh, _ := p.acquire("a", 0); fresh {
		t.Error("a second acquire reported a fresh listener")
	}
	if _, _, err := p.acquire("e", 0); !errors.Is(err, errNoPort) {
		t.Errorf("full range: %v, want errNoPort", err)
	}
	p.release("b")
	if !closed[102] {
		t.Error("release did not close b's listener")
	}
	if _, ok := p.port("b"); ok {
		t.Error("b still has a port after release")
	}
	if got := acquire("e", 9999); got != 102 {
		t.Errorf("e: port %d, want the freed 102 (preferred 9999 is out of range)", got)
	}
	p.release("nobody") // no-op
	if n := len(p.all()); n != 4 {
		t.Errorf("%d listeners, want 4", n)
	}
}
