package controller

import (
	"context"
	"crypto/tls"
)

// NodePorts gives each served node its own kubelet API port (the kubelet
// API server implements it): node-level requests of the apiserver carry no
// node name, so the port must tell the node.
type NodePorts interface {
	// Acquire returns the node's port, preferred if free, and serves it.
	Acquire(node string, preferred int32) (int32, error)
	// Release stops serving the node's port; sessions open on it stay up
	// (the node's runtime restarting takes the same port again).
	Release(node string)
	// EndSessions closes the sessions (exec, attach, port-forward, logs)
	// open on the node's port: the node is served elsewhere now.
	EndSessions(node string) int
	// ServeCertificate makes node's port present get's certificate, the
	// node's own (config nodeServices), until release.
	ServeCertificate(node string, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (release func())
}

// SetNodePorts makes every node runtime started from now on take its
// kubelet port from p. Without it every node advertises cfg.KubeletPort.
func (c *Controller) SetNodePorts(p NodePorts) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ports = p
}

// acquirePort returns the kubelet port a node advertises, and the function
// that gives it back. The node keeps the port its Node already advertises
// when it can, so a restart of rbn-kubelet moves no node to another port.
func acquirePort(ctx context.Context, d runtimeDeps, name string) (int32, func(), error) {
	if d.ports == nil {
		return d.cfg.KubeletPort, func() {}, nil
	}
	port, err := d.ports.Acquire(name, preferredPort(ctx, d, name))
	if err != nil {
		return 0, nil, err
	}
	return port, func() { d.ports.Release(name) }, nil
}
