package portal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/remote-build-nodes/rbn/internal/logging"
)

// Routes make the node's kernel deliver the pod range locally (Routing).
type Routes interface {
	Ensure() error
	Remove() error
}

// Config configures a Portal.
type Config struct {
	Client  kubernetes.Interface
	PodCIDR netip.Prefix
	Routes  Routes
	Dialer  PortForwarder
	Metrics *Metrics
	// Listen opens a listener on a pod address; nil is ListenTransparent.
	Listen func(ctx context.Context, addr string) (net.Listener, error)
}

// Portal listens on the remote pod addresses that EndpointSlices name and
// relays what it accepts to the pods.
//
// When an address leaves every slice (the pod is gone, the Service
// deleted), its listener closes but its open connections are left to
// finish: kube-proxy leaves established flows alone too (conntrack keeps
// their translation), and a deleted pod's end closes them anyway. They end
// at the latest when the Portal stops.
type Portal struct {
	cfg   Config
	relay *Relay
	queue workqueue.TypedRateLimitingInterface[string]
	ready atomic.Bool

	// Owned by the reconciling goroutine.
	listeners map[netip.AddrPort]*listener
	skipped   int
	wg        sync.WaitGroup // accept loops and relayed connections
}

// listener is an open listener and the pod it relays to.
type listener struct {
	ln     net.Listener
	target Target
	done   chan struct{} // closed when its accept loop ends
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
	if cfg.Routes == nil || cfg.Dialer == nil || cfg.Metrics == nil {
		errs = append(errs, errors.New("routes, dialer and metrics are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("portal: %w", err)
	}
	if cfg.Listen == nil {
		cfg.Listen = ListenTransparent
	}
	return &Portal{
		cfg:   cfg,
		relay: NewRelay(cfg.Dialer, cfg.Metrics),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "portal"}),
		listeners: map[netip.AddrPort]*listener{},
	}, nil
}

// Ready tells whether the EndpointSlices are synced and reconciled once.
func (p *Portal) Ready() bool { return p.ready.Load() }

// Run installs the routes, serves until ctx ends, then closes the
// listeners, ends the relayed connections and removes the routes.
func (p *Portal) Run(ctx context.Context) (err error) {
	log := logging.FromContext(ctx)
	if err := p.cfg.Routes.Ensure(); err != nil {
		// Take back what was installed before the failure.
		return errors.Join(fmt.Errorf("portal: routes: %w", err), p.cfg.Routes.Remove())
	}
	defer func() {
		if rerr := p.cfg.Routes.Remove(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("portal: remove routes: %w", rerr))
		}
	}()
	ctx, cancel := context.WithCancel(ctx)
	// Every slice of the cluster is cached: without managed fields, which
	// are most of a slice's size and of no use here.
	factory := informers.NewSharedInformerFactoryWithOptions(p.cfg.Client, 0, informers.WithTransform(stripManagedFields))
	defer func() {
		p.closeAll()
		cancel() // ends the relayed connections (Serve) and the informer
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
			log.Warn("reconcile listeners", "err", err)
			p.queue.AddRateLimited(key)
		} else {
			p.queue.Forget(key)
		}
		// Ready even if a port failed: the others are served, and the
		// failure is counted and retried (a port the node holds itself
		// may never succeed).
		p.ready.Store(true)
		p.queue.Done(key)
	}
}

// reconcile opens and closes listeners to match the slices.
func (p *Portal) reconcile(ctx context.Context, list func(labels.Selector) ([]*discoveryv1.EndpointSlice, error)) error {
	log := logging.FromContext(ctx)
	all, err := list(labels.Everything())
	if err != nil {
		return err
	}
	want := DesiredState(all, p.cfg.PodCIDR)
	pods := map[Pod]bool{}
	for _, t := range want.Listeners {
		pods[t.Pod] = true
	}
	p.relay.Retain(pods)
	for addr, l := range p.listeners {
		t, ok := want.Listeners[addr]
		if ok && t == l.target && !l.closed() {
			continue
		}
		_ = l.ln.Close()
		delete(p.listeners, addr)
		log.Info("listener closed", "addr", addr.String(), "pod", l.target.Pod.String())
	}
	var errs []error
	for addr, t := range want.Listeners {
		if _, ok := p.listeners[addr]; ok {
			continue
		}
		ln, err := p.cfg.Listen(ctx, addr.String())
		if err != nil {
			p.cfg.Metrics.listenFailures.Inc()
			errs = append(errs, err)
			continue
		}
		l := &listener{ln: ln, target: t, done: make(chan struct{})}
		p.listeners[addr] = l
		p.wg.Go(func() { p.accept(ctx, l) })
		log.Info("listening", "addr", addr.String(), "pod", t.Pod.String())
	}
	p.cfg.Metrics.listeners.Set(float64(len(p.listeners)))
	p.cfg.Metrics.skipped.Set(float64(len(want.Skipped)))
	if len(want.Skipped) != p.skipped {
		p.skipped = len(want.Skipped)
		for _, s := range want.Skipped {
			log.Info("port not relayed: TCP only", "addr", s.Addr.String(), "protocol", string(s.Protocol), "pod", s.Target.Pod.String())
		}
	}
	return errors.Join(errs...)
}

// accept relays l's connections until l closes. An accept that fails
// otherwise ends the loop and asks for a reconcile, which opens the
// listener anew (rate-limited).
func (p *Portal) accept(ctx context.Context, l *listener) {
	defer close(l.done)
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				logging.FromContext(ctx).Warn("accept failed", "addr", l.ln.Addr().String(), "err", err)
				_ = l.ln.Close()
				p.queue.AddRateLimited(reconcileKey)
			}
			return
		}
		p.wg.Go(func() { p.relay.Serve(ctx, c, l.target) })
	}
}

func (l *listener) closed() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// closeAll closes every listener.
func (p *Portal) closeAll() {
	for addr, l := range p.listeners {
		_ = l.ln.Close()
		delete(p.listeners, addr)
	}
	p.cfg.Metrics.listeners.Set(0)
}

func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
