package portal

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// fakeRoutes records Ensure and Remove.
type fakeRoutes struct {
	mu               sync.Mutex
	ensured, removed int
	err              error
}

func (r *fakeRoutes) Ensure() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ensured++
	return r.err
}

func (r *fakeRoutes) Remove() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.removed++
	return nil
}

// loopbackListen stands in for transparent listeners: each pod address
// gets a loopback listener, announced on opened; closing it is announced
// on its closed channel.
type loopbackListen struct {
	opened chan *fakeListener
}

type fakeListener struct {
	net.Listener
	addr   string // the pod address asked for
	closed chan struct{}
	once   sync.Once
}

func (l *fakeListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

func (f loopbackListen) Listen(_ context.Context, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	l := &fakeListener{Listener: ln, addr: addr, closed: make(chan struct{})}
	f.opened <- l
	return l, nil
}

func nextListener(t *testing.T, opened chan *fakeListener) *fakeListener {
	t.Helper()
	select {
	case l := <-opened:
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no listener opened in 10s")
		return nil
	}
}

func TestPortalListensRelaysAndCleansUp(t *testing.T) {
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)},
		podEndpoint("a", true, "100.96.1.2"), podEndpoint("real", true, "10.244.0.7"))
	sl.Name = "svc-abc"
	client := fake.NewClientset(sl)
	routes := &fakeRoutes{}
	d := newFakeDialer()
	m := NewMetrics()
	lf := loopbackListen{opened: make(chan *fakeListener, 16)}
	p, err := New(Config{Client: client, PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Routes: routes, Dialer: d, Metrics: m, Listen: lf.Listen})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()

	l := nextListener(t, lf.opened)
	if routes.ensured != 1 {
		t.Errorf("routes ensured %d times before listening, want 1", routes.ensured)
	}
	if l.addr != "100.96.1.2:22" {
		t.Fatalf("listening on %s, want 100.96.1.2:22", l.addr)
	}
	testwait.Eventually(t, "portal ready", p.Ready)
	if got := testutil.ToFloat64(m.listeners); got != 1 {
		t.Errorf("listeners gauge %v, want 1", got)
	}
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first := dialed(t, d)
	echo(t, first)
	roundTrip(t, c.(*net.TCPConn), "hello pod")

	// A second Service names the same port and another: one more listener.
	sl2 := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22), tcp(80)}, podEndpoint("a", false, "100.96.1.2"))
	sl2.Name = "svc-def"
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Create(ctx, sl2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l80 := nextListener(t, lf.opened)
	if l80.addr != "100.96.1.2:80" {
		t.Errorf("second listener on %s, want 100.96.1.2:80", l80.addr)
	}

	// A connection open when its listener closes is left to finish.
	open, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	// The pod's connection is reused: its streams arrive on the first conn.
	echo(t, first)

	// The pod leaves every slice: its listeners close.
	sl.Endpoints, sl2.Endpoints = sl.Endpoints[1:], nil
	for _, s := range []*discoveryv1.EndpointSlice{sl, sl2} {
		if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	wait(t, l.closed, "listener on 100.96.1.2:22 closes")
	wait(t, l80.closed, "listener on 100.96.1.2:80 closes")
	testwait.Eventually(t, "listeners gauge 0", func() bool { return testutil.ToFloat64(m.listeners) == 0 })
	roundTrip(t, open.(*net.TCPConn), "still here")

	// It comes back: listened on again.
	sl.Endpoints = append(sl.Endpoints, podEndpoint("a", true, "100.96.1.2"))
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	again := nextListener(t, lf.opened)
	if again.addr != "100.96.1.2:22" {
		t.Errorf("listening again on %s, want 100.96.1.2:22", again.addr)
	}

	cancel()
	waitRun(t, runErr)
	wait(t, again.closed, "listeners close on stop")
	if routes.removed != 1 {
		t.Errorf("routes removed %d times on stop, want 1", routes.removed)
	}
}

func TestPortalFailsWhenRoutesFail(t *testing.T) {
	routes := &fakeRoutes{err: errors.New("operation not permitted")}
	p, err := New(Config{Client: fake.NewClientset(), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Routes: routes, Dialer: newFakeDialer(), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err == nil || !errors.Is(err, routes.err) {
		t.Errorf("Run: %v, want the routes' error", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{PodCIDR: netip.MustParsePrefix("fd00::/64")})
	if err == nil {
		t.Fatal("New accepted an empty configuration")
	}
	for _, want := range []string{"client", "IPv4", "required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

// TestPortalInNetns runs the portal with its real routes and transparent
// listeners in a node namespace, and a client behind its ptv0.
func TestPortalInNetns(t *testing.T) {
	n := newTestNet(t)
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)}, podEndpoint("a", true, "10.250.1.5"))
	d := newFakeDialer()
	p, err := New(Config{
		Client: fake.NewClientset(sl), PodCIDR: netip.MustParsePrefix("10.250.0.0/16"),
		Routes: testRouting(t, n.nodeH, "ptv0"), Dialer: d, Metrics: NewMetrics(),
		Listen: func(ctx context.Context, addr string) (ln net.Listener, err error) {
			if nsErr := doInNetns(n.node, func() { ln, err = ListenTransparent(ctx, addr) }); nsErr != nil {
				return nil, nsErr
			}
			return ln, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	testwait.Eventually(t, "portal ready", p.Ready)

	var conn net.Conn
	inNetns(t, n.client, func() {
		dctx, dcancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer dcancel()
		if conn, err = (&net.Dialer{}).DialContext(dctx, "tcp4", "10.250.1.5:22"); err != nil {
			t.Fatalf("dial the pod address from behind ptv0: %v", err)
		}
	})
	defer conn.Close()
	echo(t, dialed(t, d))
	roundTrip(t, conn.(*net.TCPConn), "through the portal")

	cancel()
	waitRun(t, runErr)
	if rules := ourRules(t, n.nodeH, testRouting(t, n.nodeH)); len(rules) != 0 {
		t.Errorf("rules left after the portal stopped: %v", rules)
	}
	if routes := tableRoutes(t, n.nodeH, DefaultRouteTable); len(routes) != 0 {
		t.Errorf("routes left after the portal stopped: %v", routes)
	}
}

// waitRun waits for Run's error after its context ended.
func waitRun(t *testing.T, runErr <-chan error) {
	t.Helper()
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return in 10s after its context ended")
	}
}

func TestPortalRetriesFailedListen(t *testing.T) {
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)}, podEndpoint("a", true, "100.96.1.2"))
	lf := loopbackListen{opened: make(chan *fakeListener, 16)}
	var calls atomic.Int32
	m := NewMetrics()
	p, err := New(Config{Client: fake.NewClientset(sl), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Routes: &fakeRoutes{}, Dialer: newFakeDialer(), Metrics: m,
		Listen: func(ctx context.Context, addr string) (net.Listener, error) {
			if calls.Add(1) == 1 {
				return nil, errors.New("bind: address already in use")
			}
			return lf.Listen(ctx, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	// No slice changes: only the retry can open it.
	if l := nextListener(t, lf.opened); l.addr != "100.96.1.2:22" {
		t.Errorf("listening on %s, want 100.96.1.2:22", l.addr)
	}
	if got := testutil.ToFloat64(m.listenFailures); got != 1 {
		t.Errorf("listen failures %v, want 1", got)
	}
	cancel()
	waitRun(t, runErr)
}
