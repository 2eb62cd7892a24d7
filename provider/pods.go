package provider

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	vkapi "github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	rbnv1 "github.com/remote-build-nodes/rbn/internal/api/v1alpha1"
)

// PodsConfig configures Pods.
type PodsConfig struct {
	NodeName string
	Spec     *rbnv1.RemoteBuildNodeSpec
	Host     *Host
	Recorder record.EventRecorder
	Logger   *slog.Logger
}

// Pods implements virtual-kubelet's PodLifecycleHandler and PodNotifier for one host.
type Pods struct {
	cfg PodsConfig

	mu     sync.Mutex
	pods   map[string]*corev1.Pod // namespace/name -> pod with the status we report
	notify func(*corev1.Pod)
}

// NewPods returns the pod handler of one host.
func NewPods(cfg PodsConfig) (*Pods, error) {
	if cfg.Host == nil || cfg.Recorder == nil {
		return nil, fmt.Errorf("pods: host and recorder are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Pods{cfg: cfg, pods: map[string]*corev1.Pod{}}, nil
}

func key(namespace, name string) string { return namespace + "/" + name }

// Run drives pod status until ctx ends.
func (p *Pods) Run(ctx context.Context) { <-ctx.Done() }

// CreatePod accepts a pod bound to this node.
func (p *Pods) CreatePod(_ context.Context, pod *corev1.Pod) error {
	p.fail(pod, "Unsupported", "running pods on remote build nodes is not implemented yet")
	return nil
}

// UpdatePod accepts spec changes Kubernetes allows; none change what runs.
func (p *Pods) UpdatePod(_ context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur, ok := p.pods[key(pod.Namespace, pod.Name)]; ok {
		upd := pod.DeepCopy()
		upd.Status = cur.Status
		p.pods[key(pod.Namespace, pod.Name)] = upd
	}
	return nil
}

// DeletePod removes the pod and reports it terminated.
func (p *Pods) DeletePod(_ context.Context, pod *corev1.Pod) error {
	p.mu.Lock()
	cur, ok := p.pods[key(pod.Namespace, pod.Name)]
	delete(p.pods, key(pod.Namespace, pod.Name))
	notify := p.notify
	p.mu.Unlock()
	if !ok {
		return errdefs.NotFoundf("pod %s/%s is not on this node", pod.Namespace, pod.Name)
	}
	if notify != nil {
		notify(cur)
	}
	return nil
}

// GetPod returns the pod as this node knows it.
func (p *Pods) GetPod(_ context.Context, namespace, name string) (*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pod, ok := p.pods[key(namespace, name)]
	if !ok {
		return nil, errdefs.NotFoundf("pod %s/%s is not on this node", namespace, name)
	}
	return pod.DeepCopy(), nil
}

// GetPodStatus returns the pod's status.
func (p *Pods) GetPodStatus(ctx context.Context, namespace, name string) (*corev1.PodStatus, error) {
	pod, err := p.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, err
	}
	return &pod.Status, nil
}

// GetPods returns every pod on this node.
func (p *Pods) GetPods(_ context.Context) ([]*corev1.Pod, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*corev1.Pod, 0, len(p.pods))
	for _, pod := range p.pods {
		out = append(out, pod.DeepCopy())
	}
	return out, nil
}

// NotifyPods registers virtual-kubelet's status callback.
func (p *Pods) NotifyPods(_ context.Context, cb func(*corev1.Pod)) {
	p.mu.Lock()
	p.notify = cb
	p.mu.Unlock()
}

// fail records a pod that can never run, with a reason, and reports it.
func (p *Pods) fail(pod *corev1.Pod, reason, msg string) {
	pod = pod.DeepCopy()
	now := metav1.Now()
	pod.Status.Phase = corev1.PodFailed
	pod.Status.Reason = reason
	pod.Status.Message = msg
	pod.Status.StartTime = &now
	p.cfg.Recorder.Event(pod, corev1.EventTypeWarning, reason, msg)
	p.mu.Lock()
	p.pods[key(pod.Namespace, pod.Name)] = pod
	notify := p.notify
	p.mu.Unlock()
	if notify != nil {
		notify(pod)
	}
}

// ContainerLogs streams a container's log.
func (p *Pods) ContainerLogs(ctx context.Context, namespace, name, container string, opts vkapi.ContainerLogOpts) (io.ReadCloser, error) {
	return nil, errdefs.InvalidInput("container logs are not implemented yet")
}
