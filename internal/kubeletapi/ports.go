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

// Sessions: every connection accepted on a node's port is tracked under the
// node, below TLS (so that http.Server still sees a *tls.Conn), until it
// closes, including the ones http.Server hands over (hijacks) to exec,
// attach and port-forward. Releasing a node's port leaves them up (a long
// exec outlives a restart of the node's runtime, which takes the same port
// again); endSessions closes them, for when this process stops serving the
// node for good (another replica took its Lease: the apiserver reaches the
// node there now, and a session left here would talk to the host behind
// the new server's back).

// sessions is the set of a node's open connections.
type sessions map[*trackedConn]struct{}

// trackingListener records each connection it accepts in its node's sessions.
type trackingListener struct {
	net.Listener
	ports *nodePorts
	node  string
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, ports: l.ports, node: l.node}
	l.ports.track(tc)
	return tc, nil
}

// trackedConn leaves its node's sessions when it closes.
type trackedConn struct {
	net.Conn
	ports *nodePorts
	node  string
	once  sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.ports.untrack(c) })
	return c.Conn.Close()
}

// nodePorts hands each node a port from [first, last] and owns the
// listeners. Assignments are sticky per node while it is served, and a
// node asks for the port it advertised before (its Node object keeps it),
// so a restart of this process does not shuffle ports under the apiserver.
type nodePorts struct {
	first, last int32
	// listen binds a port; a port something else holds is skipped.
	listen func(port int32) (net.Listener, error)
	// wrap layers the protocol (TLS) over a bound, tracking listener.
	wrap func(net.Listener) net.Listener

	mu       sync.Mutex
	byNode   map[string]*nodeListener
	byPort   map[int32]*nodeListener
	sessions map[string]sessions
}

func newNodePorts(first, last int32, listen func(int32) (net.Listener, error), wrap func(net.Listener) net.Listener) *nodePorts {
	if wrap == nil {
		wrap = func(l net.Listener) net.Listener { return l }
	}
	return &nodePorts{first: first, last: last, listen: listen, wrap: wrap,
		byNode: map[string]*nodeListener{}, byPort: map[int32]*nodeListener{}, sessions: map[string]sessions{}}
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
		l := &nodeListener{Listener: p.wrap(&trackingListener{Listener: ln, ports: p, node: node}), node: node, port: port}
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
// already accepted on it stay up (a long exec outlives a node restart)
// until endSessions.
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

func (p *nodePorts) track(c *trackedConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.sessions[c.node]
	if set == nil {
		set = sessions{}
		p.sessions[c.node] = set
	}
	set[c] = struct{}{}
}

func (p *nodePorts) untrack(c *trackedConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if set := p.sessions[c.node]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(p.sessions, c.node)
		}
	}
}

// endSessions closes every connection accepted on node's port, released or
// not, and returns how many it closed.
func (p *nodePorts) endSessions(node string) int {
	p.mu.Lock()
	set := p.sessions[node]
	delete(p.sessions, node)
	p.mu.Unlock()
	for c := range set {
		// The raw connection: closing the TLS layer above it would first
		// try to send close_notify, which can wait behind a blocked write.
		_ = c.Conn.Close()
	}
	return len(set)
}
