package portal

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// fakeCapture records Ensure and Remove.
type fakeCapture struct {
	mu               sync.Mutex
	ensured, removed int
	err              error
}

func (c *fakeCapture) Ensure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ensured++
	return c.err
}

func (c *fakeCapture) Remove() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removed++
	return nil
}

func (c *fakeCapture) counts() (ensured, removed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ensured, c.removed
}

// origDstListener stands in for the transparent listener: a loopback
// listener whose accepted connections have, as local address, the
// original destination the test sent on dst before dialing.
type origDstListener struct {
	net.Listener
	dst    chan netip.AddrPort
	closed chan struct{}
	once   sync.Once
}

func newOrigDstListener(t *testing.T) *origDstListener {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return &origDstListener{Listener: ln, dst: make(chan netip.AddrPort, 16), closed: make(chan struct{})}
}

func (l *origDstListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return origDstConn{Conn: c, dst: net.TCPAddrFromAddrPort(<-l.dst)}, nil
}

func (l *origDstListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// dial connects as if to dst.
func (l *origDstListener) dial(t *testing.T, dst string) *net.TCPConn {
	t.Helper()
	l.dst <- netip.MustParseAddrPort(dst)
	c, err := net.Dial("tcp4", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

type origDstConn struct {
	net.Conn
	dst net.Addr
}

func (c origDstConn) LocalAddr() net.Addr { return c.dst }

// startPortal runs a portal of the range 100.96.0.0/16 with fakes.
func startPortal(t *testing.T, client *fake.Clientset) (*Portal, *origDstListener, *fakeCapture, *fakeDialer, *Metrics, func()) {
	t.Helper()
	capture, d, m, ln := &fakeCapture{}, newFakeDialer(), NewMetrics(), newOrigDstListener(t)
	var listenedOn string
	p, err := New(Config{Client: client, PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Capture: capture, ListenAddress: netip.MustParseAddrPort("127.0.0.1:15196"), Dialer: d, Metrics: m,
		Listen: func(_ context.Context, addr string) (net.Listener, error) {
			listenedOn = addr
			return ln, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, p)
	if listenedOn != "127.0.0.1:15196" {
		t.Errorf("listened on %q, want the listen address", listenedOn)
	}
	if ensured, _ := capture.counts(); ensured != 1 {
		t.Errorf("capture ensured %d times, want 1", ensured)
	}
	return p, ln, capture, d, m, stop
}

// start runs p, ready when start returns, until stop (at the latest at
// the end of t), which waits for Run's end.
func start(t *testing.T, p *Portal) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); waitRun(t, runErr) }) }
	t.Cleanup(stop)
	testwait.Eventually(t, "portal ready", p.Ready)
	return stop
}

// closedByPortal checks that c is closed without a byte.
func closedByPortal(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Errorf("read %q, %v; want the portal to close the connection", got, err)
	}
}

func TestPortalRelaysByOriginalDestination(t *testing.T) {
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)},
		podEndpoint("a", true, "100.96.1.2"), podEndpoint("real", true, "10.244.0.7"))
	sl.Name = "svc-abc"
	client := fake.NewClientset(sl)
	p, ln, capture, d, m, stop := startPortal(t, client)
	ctx := t.Context()
	if got := testutil.ToFloat64(m.endpoints); got != 1 {
		t.Errorf("endpoints gauge %v, want 1", got)
	}

	c := ln.dial(t, "100.96.1.2:22")
	first := dialed(t, d)
	if port := echo(t, first); port != "22" {
		t.Errorf("relayed to port %q, want 22", port)
	}
	roundTrip(t, c, "hello pod")

	// A port no slice names (yet): closed, counted.
	closedByPortal(t, ln.dial(t, "100.96.1.2:80"))
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonUnknownDestination)); got != 1 {
		t.Errorf("unknown destinations %v, want 1", got)
	}

	// A second Service names the same port and another: relayed too.
	sl2 := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22), tcp(80)}, podEndpoint("a", false, "100.96.1.2"))
	sl2.Name = "svc-def"
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Create(ctx, sl2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, "100.96.1.2:80 relayed", func() bool {
		_, ok := p.Lookup(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("100.96.1.2:80")))
		return ok
	})
	if got := testutil.ToFloat64(m.endpoints); got != 2 {
		t.Errorf("endpoints gauge %v, want 2", got)
	}
	c80 := ln.dial(t, "100.96.1.2:80")
	// The pod's connection is reused: its streams arrive on the first conn.
	if port := echo(t, first); port != "80" {
		t.Errorf("relayed to port %q, want 80", port)
	}
	roundTrip(t, c80, "port 80")

	// A connection open when the pod leaves every slice is left to finish;
	// new ones are closed.
	open := ln.dial(t, "100.96.1.2:22")
	echo(t, first)
	sl.Endpoints, sl2.Endpoints = sl.Endpoints[1:], nil
	for _, s := range []*discoveryv1.EndpointSlice{sl, sl2} {
		if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Eventually(t, "endpoints gauge 0", func() bool { return testutil.ToFloat64(m.endpoints) == 0 })
	closedByPortal(t, ln.dial(t, "100.96.1.2:22"))
	roundTrip(t, open, "still here")
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonUnknownDestination)); got != 2 {
		t.Errorf("unknown destinations %v, want 2", got)
	}

	stop()
	wait(t, ln.closed, "listener closes on stop")
	if _, removed := capture.counts(); removed != 1 {
		t.Errorf("capture removed %d times on stop, want 1", removed)
	}
}

func TestLookup(t *testing.T) {
	p, err := New(Config{Client: fake.NewClientset(), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Capture: &fakeCapture{}, ListenAddress: netip.MustParseAddrPort("127.0.0.1:15196"), Dialer: newFakeDialer(), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)}, podEndpoint("a", true, "100.96.1.2"))
	if err := p.reconcile(t.Context(), listOf(sl)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dst  net.Addr
		want bool
	}{
		{net.TCPAddrFromAddrPort(ap("100.96.1.2:22")), true},
		// A dual-stack socket reports IPv4 destinations mapped.
		{&net.TCPAddr{IP: net.ParseIP("::ffff:100.96.1.2"), Port: 22}, true},
		{net.TCPAddrFromAddrPort(ap("100.96.1.2:23")), false},
		{net.TCPAddrFromAddrPort(ap("100.96.1.3:22")), false},
		{&net.UDPAddr{IP: net.ParseIP("100.96.1.2"), Port: 22}, false},
	} {
		got, ok := p.Lookup(tc.dst)
		if ok != tc.want || (ok && got != target("ns", "a", 22)) {
			t.Errorf("Lookup(%v) = %v, %v; want found %v", tc.dst, got, ok, tc.want)
		}
	}
}

func listOf(s ...*discoveryv1.EndpointSlice) func(labels.Selector) ([]*discoveryv1.EndpointSlice, error) {
	return func(labels.Selector) ([]*discoveryv1.EndpointSlice, error) { return s, nil }
}

func TestPortalFailsWhenCaptureFails(t *testing.T) {
	capture := &fakeCapture{err: errors.New("operation not permitted")}
	ln := newOrigDstListener(t)
	p, err := New(Config{Client: fake.NewClientset(), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Capture: capture, ListenAddress: netip.MustParseAddrPort("127.0.0.1:15196"), Dialer: newFakeDialer(), Metrics: NewMetrics(),
		Listen: func(context.Context, string) (net.Listener, error) { return ln, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err == nil || !errors.Is(err, capture.err) {
		t.Errorf("Run: %v, want the capture's error", err)
	}
	if _, removed := capture.counts(); removed != 1 {
		t.Errorf("capture removed %d times after failing, want 1", removed)
	}
	wait(t, ln.closed, "listener closed")
}

func TestPortalFailsWhenListenFails(t *testing.T) {
	capture := &fakeCapture{}
	listenErr := errors.New("address already in use")
	p, err := New(Config{Client: fake.NewClientset(), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Capture: capture, ListenAddress: netip.MustParseAddrPort("127.0.0.1:15196"), Dialer: newFakeDialer(), Metrics: NewMetrics(),
		Listen: func(context.Context, string) (net.Listener, error) { return nil, listenErr }})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); !errors.Is(err, listenErr) {
		t.Errorf("Run: %v, want the listen error", err)
	}
	if ensured, _ := capture.counts(); ensured != 0 {
		t.Errorf("capture ensured without a listener")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	_, err := New(Config{PodCIDR: netip.MustParsePrefix("fd00::/64")})
	if err == nil {
		t.Fatal("New accepted an empty configuration")
	}
	for _, want := range []string{"client", "IPv4", "listen address", "required"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
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
