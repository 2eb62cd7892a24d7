package provider

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/clock"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/provider/node"
)

// NodeConfig configures a NodeProvider.
type NodeConfig struct {
	Name           string
	Spec           *rbnv1.RemoteBuildNodeSpec // defaulted and valid
	Host           *Host
	KubeletAddress string
	KubeletPort    int32
	Clock          clock.Clock
}

// NodeProvider implements virtual-kubelet's node.NodeProvider for one host:
// the Node is rebuilt from the host's facts whenever they change.
type NodeProvider struct {
	cfg NodeConfig

	mu     sync.Mutex
	notify func(*corev1.Node)
	kick   chan struct{}
}

// NewNodeProvider returns a NodeProvider; Run delivers its updates.
func NewNodeProvider(cfg NodeConfig) *NodeProvider {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	return &NodeProvider{cfg: cfg, kick: make(chan struct{}, 1)}
}

// Node is the Node as the host looks now.
func (p *NodeProvider) Node() *corev1.Node {
	info, health := p.cfg.Host.Snapshot()
	return node.Build(p.cfg.Name, p.cfg.Spec, node.Facts{
		Host:           info,
		Health:         health,
		Now:            p.cfg.Clock.Now(),
		KubeletAddress: p.cfg.KubeletAddress,
		KubeletPort:    p.cfg.KubeletPort,
	})
}

// Ping reports this process alive. The host's own health is told through
// the Ready condition instead: a failed Ping would stop the Lease and the
// node lifecycle controller would replace our reason with "Unknown".
func (p *NodeProvider) Ping(ctx context.Context) error { return ctx.Err() }

// NotifyNodeStatus registers virtual-kubelet's callback.
func (p *NodeProvider) NotifyNodeStatus(_ context.Context, cb func(*corev1.Node)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// Run sends the Node to virtual-kubelet each time the host changes.
func (p *NodeProvider) Run(ctx context.Context) {
	for {
		changed := p.cfg.Host.Changed()
		p.mu.Lock()
		cb := p.notify
		p.mu.Unlock()
		if cb != nil {
			cb(p.Node()) // may block until the node controller takes it
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-p.kick:
		}
	}
}
