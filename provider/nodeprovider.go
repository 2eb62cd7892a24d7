package provider

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
	"github.com/remote-build-nodes/rbn/provider/node"
)

// PodCounts is what the node's facts need from its pod handler.
type PodCounts interface {
	RunningPods() int
	RecentFailures() int
	Changed() <-chan struct{}
}

// NodeConfig configures a NodeProvider.
type NodeConfig struct {
	Name string
	Spec *rbnv1.RemoteBuildNodeSpec // defaulted and valid
	Host *Host
	Pods PodCounts
	// Volumes is the watch of the node's volume root; nil: its space is
	// unknown.
	Volumes        *HostVolumes
	KubeletAddress string
	KubeletPort    int32
	// PodUpdateInterval coalesces node updates caused by pod churn: a burst
	// of pods must not become a burst of Node patches. Default 5s.
	PodUpdateInterval time.Duration
	Clock             clock.WithTicker
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
	if cfg.PodUpdateInterval == 0 {
		cfg.PodUpdateInterval = 5 * time.Second
	}
	return &NodeProvider{cfg: cfg, kick: make(chan struct{}, 1)}
}

// Node is the Node as the host looks now, with the host's live facts in
// the rbn.dev/host-facts annotation for rbn-extender.
func (p *NodeProvider) Node() *corev1.Node {
	info, health := p.cfg.Host.Snapshot()
	now := p.cfg.Clock.Now()
	n := node.Build(p.cfg.Name, p.cfg.Spec, node.Facts{
		Host:           info,
		Health:         health,
		Now:            now,
		KubeletAddress: p.cfg.KubeletAddress,
		KubeletPort:    p.cfg.KubeletPort,
	})
	facts := rbnv1.HostFacts{
		ObservedAt:         metav1.NewTime(now),
		Healthy:            health.Ready,
		TmpFreeBytes:       -1, // podman reports no figure for its temporary area
		VolumeFreeBytes:    -1,
		SSHRoundTripMillis: p.cfg.Host.SSH().State().RTT.Milliseconds(),
		Images:             p.cfg.Host.Images(),
	}
	if info != nil && info.StorageTotal > 0 {
		facts.StorageFreeBytes = int64(info.StorageAvailable)
	}
	if p.cfg.Volumes != nil {
		if sp, ok := p.cfg.Volumes.Space(); ok {
			facts.VolumeFreeBytes = max(sp.Free(), 0)
		}
	}
	if p.cfg.Pods != nil {
		facts.RunningPods = p.cfg.Pods.RunningPods()
		facts.RecentFailures = p.cfg.Pods.RecentFailures()
	}
	if b, err := json.Marshal(facts); err == nil {
		n.Annotations[rbnv1.AnnotationHostFacts] = string(b)
	}
	return n
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

// deliver hands the Node to virtual-kubelet's callback, which blocks until
// its node controller takes it: a send on a channel that nobody reads once
// that controller has stopped. It reports false when ctx ended first; the
// callback's goroutine then stays blocked, rather than the node's shutdown
// (which would hold a RemoteBuildNode's deletion for good).
func (p *NodeProvider) deliver(ctx context.Context, cb func(*corev1.Node)) bool {
	n := p.Node()
	done := make(chan struct{})
	go func() { defer close(done); cb(n) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}

// Run sends the Node to virtual-kubelet each time the host or the space of
// its volume root changes, and after pod churn at most once per
// PodUpdateInterval, until ctx ends; it returns nil then.
func (p *NodeProvider) Run(ctx context.Context) error {
	var podsChanged, volumesChanged <-chan struct{}
	for {
		hostChanged := p.cfg.Host.Changed()
		if p.cfg.Volumes != nil {
			volumesChanged = p.cfg.Volumes.Changed()
		}
		if p.cfg.Pods != nil {
			podsChanged = p.cfg.Pods.Changed()
		}
		p.mu.Lock()
		cb := p.notify
		p.mu.Unlock()
		if cb != nil && !p.deliver(ctx, cb) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-hostChanged:
		case <-p.kick:
		case <-volumesChanged:
		case <-podsChanged:
			t := p.cfg.Clock.NewTimer(p.cfg.PodUpdateInterval)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-hostChanged:
			case <-t.C():
			}
			t.Stop()
		}
	}
}
