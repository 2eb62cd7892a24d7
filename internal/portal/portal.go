package portal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// Captor makes the node's kernel deliver the pod range's connections to
// the portal's listener (Capture).
type Captor interface {
	Ensure() error
	Remove() error
}

// Config configures a Portal.
type Config struct {
	Client  kubernetes.Interface
	PodCIDR netip.Prefix
	Capture Captor
	// ListenAddress is where the transparent listener listens, the
	// address the capture steers to (Capture.ListenAddress).
	ListenAddress netip.AddrPort
	Dialer        PortForwarder
	Metrics       *Metrics
	// Listen opens the listener; nil is ListenTransparent. Its accepted
	// connections' local address is their original destination.
	Listen func(ctx context.Context, addr string) (net.Listener, error)
}

// Portal accepts the connections the capture steers to its one listener
// and relays each to the pod whose address and port (the connection's
// original destination) an EndpointSlice names.
//
// When an address leaves every slice (the pod is gone, the Service
// deleted), new connections to it are closed but open ones are left to
// finish: kube-proxy leaves established flows alone too (conntrack keeps
// their translation), and a deleted pod's end closes them anyway. They end
// at the latest when the Portal stops.
type Portal struct {
	cfg   Config
	relay *Relay
	queue workqueue.TypedRateLimitingInterface[string]
	ready atomic.Bool

	// endpoints is what the reconciler last computed; it replaces the
	// map as a whole, never changes one.
	endpoints atomic.Pointer[map[netip.AddrPort]Target]
	skipped   int            // owned by the reconciling goroutine
	wg        sync.WaitGroup // the accept loop and relayed connections
}

// reconcileKey is the queue's one key: every event asks for one full
// reconcile, and events during one coalesce into the next.
const reconcileKey = "endpointslices"

// New validates cfg. A Portal runs once.
func New(cfg Config) (*Portal, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("no Kubernetes client"))
	}
	if !cfg.PodCIDR.IsValid() || !cfg.PodCIDR.Addr().Is4() {
		errs = append(errs, fmt.Errorf("pod CIDR %q: not an IPv4 prefix", cfg.PodCIDR))
	}
	if !cfg.ListenAddress.IsValid() {
		errs = append(errs, errors.New("no listen address"))
	}
	if cfg.Capture == nil || cfg.Dialer == nil || cfg.Metrics == nil {
		errs = append(errs, errors.New("capture, dialer and metrics are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	if cfg.Listen == nil {
		cfg.Listen = ListenTransparent
	}
	p := &Portal{
		cfg:   cfg,
		relay: NewRelay(cfg.Dialer, cfg.Metrics),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "portal"}),
	}
	p.endpoints.Store(&map[netip.AddrPort]Target{})
	return p, nil
}

// Ready tells whether the EndpointSlices are synced and reconciled once.
func (p *Portal) Ready() bool { return p.ready.Load() }

// Run listens, installs the capture, serves until ctx ends, then removes
// the capture, closes the listener and ends the relayed connections.
func (p *Portal) Run(ctx context.Context) (err error) {
	log := logging.FromContext(ctx)
	// The listener first: until it is there, the kernel's tproxy finds no
	// socket and leaves packets alone.
	ln, err := p.cfg.Listen(ctx, p.cfg.ListenAddress.String())
	if err != nil {
		return fmt.Errorf("portal: %w", err)
	}
	defer ln.Close()
	if err := p.cfg.Capture.Ensure(); err != nil {
		// Take back what was installed before the failure.
		return errors.Join(fmt.Errorf("portal: capture: %w", err), p.cfg.Capture.Remove())
	}
	defer func() {
		if rerr := p.cfg.Capture.Remove(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("portal: remove capture: %w", rerr))
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	// Every slice of the cluster is cached: without managed fields, which
	// are most of a slice's size and of no use here.
	factory := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, 0, informers.WithTransform(stripManagedFields))
	defer func() {
		_ = ln.Close() // ends the accept loop
		cancel()       // ends the relayed connections (Serve) and the informer
		factory.Shutdown()
		p.wg.Wait()
	}()
	slices := factory.Discovery().V1().EndpointSlices()
	enqueue := func(any) { p.queue.Add(reconcileKey) }
	handler, err := slices.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue, UpdateFunc: func(_, _ any) { p.queue.Add(reconcileKey) }, DeleteFunc: enqueue,
	})
	if err != nil {
		return fmt.Errorf("portal: watch EndpointSlices: %w", err)
	}
	factory.Start(ctx.Done())
	go func() { <-ctx.Done(); p.queue.ShutDown() }()
	p.wg.Go(func() { p.accept(ctx, ln) })
	// The handler's sync: the initial slices are queued (as one key).
	if !cache.WaitForCacheSync(ctx.Done(), handler.HasSynced) {
		return nil // stopped before the first sync
	}
	log.Info("portal serving", "podCIDR", p.cfg.PodCIDR.String(), "listen", ln.Addr().String())
	p.queue.Add(reconcileKey)
	for {
		key, shutdown := p.queue.Get()
		if shutdown {
			return nil
		}
		if err := p.reconcile(ctx, slices.Lister().List); err != nil {
			log.Warn("reconcile endpoints", "err", err)
			p.queue.AddRateLimited(key)
		} else {
			p.queue.Forget(key)
			p.ready.Store(true)
		}
		p.queue.Done(key)
	}
}

// reconcile replaces the endpoints with the slices' and keeps the pods'
// port-forward connections.
func (p *Portal) reconcile(ctx context.Context, list func(labels.Selector) ([]*discoveryv1.EndpointSlice, error)) error {
	log := logging.FromContext(ctx)
	all, err := list(labels.Everything())
	if err != nil {
		return err
	}
	want := DesiredState(all, p.cfg.PodCIDR)
	pods := map[Pod]bool{}
	for _, t := range want.Endpoints {
		pods[t.Pod] = true
	}
	p.relay.Retain(pods)
	old := *p.endpoints.Swap(&want.Endpoints)
	for addr, t := range want.Endpoints {
		if o, ok := old[addr]; !ok || o != t {
			log.Info("relaying", "addr", addr.String(), "pod", t.Pod.String())
		}
	}
	for addr, t := range old {
		if _, ok := want.Endpoints[addr]; !ok {
			log.Info("no longer relaying", "addr", addr.String(), "pod", t.Pod.String())
		}
	}
	p.cfg.Metrics.endpoints.Set(float64(len(want.Endpoints)))
	p.cfg.Metrics.skipped.Set(float64(len(want.Skipped)))
	if len(want.Skipped) != p.skipped {
		p.skipped = len(want.Skipped)
		for _, s := range want.Skipped {
			log.Info("port not relayed: TCP only", "addr", s.Addr.String(), "protocol", string(s.Protocol), "pod", s.Target.Pod.String())
		}
	}
	return nil
}

// Lookup is the target of a connection to dst, its original destination.
func (p *Portal) Lookup(dst net.Addr) (Target, bool) {
	tcp, ok := dst.(*net.TCPAddr)
	if !ok {
		return Target{}, false
	}
	ap := tcp.AddrPort()
	t, ok := (*p.endpoints.Load())[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
	return t, ok
}

// Accept errors other than a closed listener (out of file descriptors)
// are retried after a delay, doubled up to a limit, as net/http does.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// accept relays ln's connections until ln closes.
func (p *Portal) accept(ctx context.Context, ln net.Listener) {
	log := logging.FromContext(ctx)
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, acceptRetryMin), acceptRetryMax)
			log.Warn("accept failed", "err", err, "retryIn", delay)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		t, ok := p.Lookup(c.LocalAddr())
		if !ok {
			p.cfg.Metrics.accepted.Inc()
			p.cfg.Metrics.failed.WithLabelValues(ReasonUnknownDestination).Inc()
			log.Info("connection to an address no EndpointSlice names closed", "dst", c.LocalAddr().String(), "client", c.RemoteAddr().String())
			_ = c.Close()
			continue
		}
		p.wg.Go(func() { p.relay.Serve(ctx, c, t) })
	}
}

func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
