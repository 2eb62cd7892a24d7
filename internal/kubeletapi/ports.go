package kubeletapi

import (
	"errors"
	"fmt"
	"net"
	"sync"
)

// Why one port per node: the apiserver reaches a node's kubelet API at
// InternalIP:status.daemonEndpoints.kubeletEndpoint.port and sends node-level
// requests (/stats/summary, /metrics/resource, /pods) with nothing in them
// that names the node: no node in the path, the Host header is that IP and
// port, and there is no SNI for an IP. Every node of this process shares the
// one IP it can be reached at, so the port is the only thing that can tell
// nodes apart. Each node therefore gets its own listener, all served by the
// same http.Server and handler; the local port of a request says which node
// it is for (see Server.nodeOf). Pod routes carry namespace and pod and are
// resolved through them on the shared port; on a node's port they must be
// that node's pods.

// nodeListener is a node's own listener.
type nodeListener struct {
	net.Listener
	node string
	port int32
}

// nodePorts hands each node a port from [first, last] and owns the
// listeners. Assignments are sticky per node while it is served, and a
// node asks for the port it advertised before (its Node object keeps it),
// so a restart of this process does not shuffle ports under the apiserver.
type nodePorts struct {
	first, last int32
	// listen binds a port; a port something else holds is skipped.
	listen func(port int32) (net.Listener, error)

	mu     sync.Mutex
	byNode map[string]*nodeListener
	byPort map[int32]*nodeListener
}

func newNodePorts(first, last int32, listen func(int32) (net.Listener, error)) *nodePorts {
	return &nodePorts{first: first, last: last, listen: listen,
		byNode: map[string]*nodeListener{}, byPort: map[int32]*nodeListener{}}
}

// errNoPort: every port of the range is taken.
var errNoPort = errors.New("no free port")

// acquire returns node's listener, binding one when it has none: preferred
// when it is in the range and free, else the lowest free port. fresh says
// whether the listener is new (the caller starts serving it).
func (p *nodePorts) acquire(node string, preferred int32) (l *nodeListener, fresh bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byNode[node]; l != nil {
		return l, false, nil
	}
	candidates := make([]int32, 0, p.last-p.first+2)
	if preferred >= p.first && preferred <= p.last {
		candidates = append(candidates, preferred)
	}
	for port := p.first; port <= p.last; port++ {
		if port != preferred {
			candidates = append(candidates, port)
		}
	}
	var lastErr error
	for _, port := range candidates {
		if p.byPort[port] != nil {
			continue
		}
		ln, err := p.listen(port)
		if err != nil {
			lastErr = err // in use by another process: try the next
			continue
		}
		l := &nodeListener{Listener: ln, node: node, port: port}
		p.byNode[node], p.byPort[port] = l, l
		return l, true, nil
	}
	err = fmt.Errorf("%w for node %s in kubelet API port range %d-%d", errNoPort, node, p.first, p.last)
	if lastErr != nil {
		err = fmt.Errorf("%w (last: %v)", err, lastErr)
	}
	return nil, false, err
}

// release closes node's listener; its port becomes free. Connections
// already accepted on it stay up (a long exec outlives a node restart).
func (p *nodePorts) release(node string) {
	p.mu.Lock()
	l := p.byNode[node]
	if l != nil {
		delete(p.byNode, node)
		delete(p.byPort, l.port)
	}
	p.mu.Unlock()
	if l != nil {
		_ = l.Close()
	}
}

// port returns node's port, if it has one.
func (p *nodePorts) port(node string) (int32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byNode[node]; l != nil {
		return l.port, true
	}
	return 0, false
}

// nodeAt returns the node holding port.
func (p *nodePorts) nodeAt(port int32) (string, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if l := p.byPort[port]; l != nil {
		return l.node, true
	}
	return "", false
}

// all returns every current listener.
func (p *nodePorts) all() []*nodeListener {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*nodeListener, 0, len(p.byNode))
	for _, l := range p.byNode {
		out = append(out, l)
	}
	return out
}
