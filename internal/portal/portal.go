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

// Captor routes the pod range's connections to where the portal's
// listeners are (Namespace).
type Captor interface {
	// Ensure installs the routing; doing it again changes nothing.
	Ensure() error
	// Listen listens for connections to every address of the pod range
	// on port. The accepted connections' local address is the one the
	// client connected to (after kube-proxy's DNAT: a pod's).
	Listen(ctx context.Context, port uint16) (net.Listener, error)
	// Remove takes back what Ensure installed.
	Remove() error
}

// Config configures a Portal.
type Config struct {
	Client  kubernetes.Interface
	PodCIDR netip.Prefix
	Capture Captor
	Dialer  PortForwarder
	Metrics *Metrics
}

// Portal listens, through the capture, on every TCP port an endpoint it
// relays uses, and relays each accepted connection to the pod whose
// address and port (the connection's destination) an EndpointSlice
// names.
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
	// listeners by port, and skipped, are owned by the reconciling
	// goroutine.
	listeners map[uint16]net.Listener
	skipped   int
	wg        sync.WaitGroup // the accept loops and relayed connections
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
	if cfg.Capture == nil || cfg.Dialer == nil || cfg.Metrics == nil {
		errs = append(errs, errors.New("capture, dialer and metrics are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	p := &Portal{
		cfg:       cfg,
		listeners: map[uint16]net.Listener{},
		relay:     NewRelay(cfg.Dialer, cfg.Metrics),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "portal"}),
	}
	p.endpoints.Store(&map[netip.AddrPort]Target{})
	return p, nil
}

// Ready tells whether the EndpointSlices are synced and reconciled once.
func (p *Portal) Ready() bool { return p.ready.Load() }

// Run installs the capture, serves until ctx ends, then closes the
// listeners, ends the relayed connections and removes the capture.
func (p *Portal) Run(ctx context.Context) (err error) {
	log := logging.FromContext(ctx)
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
		p.closeListeners(func(uint16) bool { return false }) // ends the accept loops
		cancel()                                             // ends the relayed connections (Serve) and the informer
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
	// The handler's sync: the initial slices are queued (as one key).
	if !cache.WaitForCacheSync(ctx.Done(), handler.HasSynced) {
		return nil // stopped before the first sync
	}
	log.Info("portal serving", "podCIDR", p.cfg.PodCIDR.String())
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

// reconcile replaces the endpoints with the slices', listens on their
// ports (and no others) and keeps the pods' port-forward connections.
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
	return p.listen(ctx, want.Endpoints)
}

// listen opens a listener for each port of endpoints that has none, and
// closes those of the other ports (connections they accepted go on). A
// port whose listener fails to open is retried with the next reconcile.
func (p *Portal) listen(ctx context.Context, endpoints map[netip.AddrPort]Target) error {
	log := logging.FromContext(ctx)
	ports := map[uint16]bool{}
	for addr := range endpoints {
		ports[addr.Port()] = true
	}
	p.closeListeners(func(port uint16) bool { return ports[port] })
	var errs []error
	for port := range ports {
		if p.listeners[port] != nil {
			continue
		}
		ln, err := p.cfg.Capture.Listen(ctx, port)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		log.Info("listening", "port", port)
		p.listeners[port] = ln
		p.wg.Go(func() { p.accept(ctx, ln) })
	}
	p.cfg.Metrics.listeners.Set(float64(len(p.listeners)))
	return errors.Join(errs...)
}

// closeListeners closes the listeners of the ports not kept, which ends
// their accept loops. The gauge is set first: who sees a listener closed
// sees the gauge without it.
func (p *Portal) closeListeners(keep func(port uint16) bool) {
	var closing []net.Listener
	for port, ln := range p.listeners {
		if !keep(port) {
			closing = append(closing, ln)
			delete(p.listeners, port)
		}
	}
	p.cfg.Metrics.listeners.Set(float64(len(p.listeners)))
	for _, ln := range closing {
		_ = ln.Close()
	}
}

// Lookup is the target of a connection to dst, its destination.
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
