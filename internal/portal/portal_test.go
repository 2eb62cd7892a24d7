package portal

import (
	"context"
	"errors"
	"fmt"
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

// fakeCapture records Ensure and Remove, and listens on loopback.
type fakeCapture struct {
	t                *testing.T
	mu               sync.Mutex
	ensured, removed int
	listenCalls      int
	err, listenErr   error
	listeners        map[uint16]*origDstListener
}

func newFakeCapture(t *testing.T) *fakeCapture {
	return &fakeCapture{t: t, listeners: map[uint16]*origDstListener{}}
}

func (c *fakeCapture) Listen(_ context.Context, port uint16) (net.Listener, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.listenCalls++
	if c.listenErr != nil {
		return nil, c.listenErr
	}
	ln := newOrigDstListener(c.t)
	c.listeners[port] = ln
	return ln, nil
}

// listener is the listener of port, once the portal opened it.
func (c *fakeCapture) listener(t *testing.T, port uint16) *origDstListener {
	t.Helper()
	var ln *origDstListener
	testwait.Eventually(t, fmt.Sprintf("a listener on port %d", port), func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		ln = c.listeners[port]
		return ln != nil
	})
	return ln
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

// origDstListener stands in for a listener in the portal's namespace: a
// loopback listener whose accepted connections have, as local address,
// the destination the test sent on dst before dialing.
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
func startPortal(t *testing.T, client *fake.Clientset) (*Portal, *fakeCapture, *fakeDialer, *Metrics, func()) {
	t.Helper()
	capture, d, m := newFakeCapture(t), newFakeDialer(), NewMetrics()
	p, err := New(Config{Client: client, PodCIDR: netip.MustParsePrefix("100.96.0.0/16"), Capture: capture, Dialer: d, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, p)
	if ensured, _ := capture.counts(); ensured != 1 {
		t.Errorf("capture ensured %d times, want 1", ensured)
	}
	return p, capture, d, m, stop
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

func TestPortalRelaysByDestination(t *testing.T) {
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)},
		podEndpoint("a", true, "100.96.1.2"), podEndpoint("real", true, "10.244.0.7"))
	sl.Name = "svc-abc"
	client := fake.NewClientset(sl)
	p, capture, d, m, stop := startPortal(t, client)
	ctx := t.Context()
	if got := testutil.ToFloat64(m.endpoints); got != 1 {
		t.Errorf("endpoints gauge %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.listeners); got != 1 {
		t.Errorf("listeners gauge %v, want 1", got)
	}
	ln22 := capture.listener(t, 22)

	c := ln22.dial(t, "100.96.1.2:22")
	first := dialed(t, d)
	if port := echo(t, first); port != "22" {
		t.Errorf("relayed to port %q, want 22", port)
	}
	roundTrip(t, c, "hello pod")

	// An address no slice names with the port: closed, counted.
	closedByPortal(t, ln22.dial(t, "100.96.1.3:22"))
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonUnknownDestination)); got != 1 {
		t.Errorf("unknown destinations %v, want 1", got)
	}

	// A second Service names the same port and another: a listener for
	// the new port, relayed too.
	sl2 := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22), tcp(80)}, podEndpoint("a", false, "100.96.1.2"))
	sl2.Name = "svc-def"
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Create(ctx, sl2, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ln80 := capture.listener(t, 80)
	testwait.Eventually(t, "100.96.1.2:80 relayed", func() bool {
		_, ok := p.Lookup(net.TCPAddrFromAddrPort(netip.MustParseAddrPort("100.96.1.2:80")))
		return ok
	})
	if got := testutil.ToFloat64(m.endpoints); got != 2 {
		t.Errorf("endpoints gauge %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.listeners); got != 2 {
		t.Errorf("listeners gauge %v, want 2", got)
	}
	c80 := ln80.dial(t, "100.96.1.2:80")
	// The pod's connection is reused: its streams arrive on the first conn.
	if port := echo(t, first); port != "80" {
		t.Errorf("relayed to port %q, want 80", port)
	}
	roundTrip(t, c80, "port 80")

	// When no endpoint uses a port any more, its listener closes; the
	// connections it accepted are left to finish.
	open22, open80 := ln22.dial(t, "100.96.1.2:22"), ln80.dial(t, "100.96.1.2:80")
	echo(t, first)
	echo(t, first)
	sl2.Endpoints = nil
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, sl2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(t, ln80.closed, "port 80's listener closes")
	if got := testutil.ToFloat64(m.listeners); got != 1 {
		t.Errorf("listeners gauge %v, want 1", got)
	}
	roundTrip(t, open80, "port 80 still here")

	// A connection open when the pod leaves every slice is left to
	// finish.
	sl.Endpoints = sl.Endpoints[1:]
	if _, err := client.DiscoveryV1().EndpointSlices("ns").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait(t, ln22.closed, "port 22's listener closes")
	if got := testutil.ToFloat64(m.endpoints); got != 0 {
		t.Errorf("endpoints gauge %v, want 0", got)
	}
	roundTrip(t, open22, "still here")

	stop()
	if got := testutil.ToFloat64(m.listeners); got != 0 {
		t.Errorf("listeners gauge %v after stop, want 0", got)
	}
	if _, removed := capture.counts(); removed != 1 {
		t.Errorf("capture removed %d times on stop, want 1", removed)
	}
}

func TestLookup(t *testing.T) {
	p, err := New(Config{Client: fake.NewClientset(), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Capture: newFakeCapture(t), Dialer: newFakeDialer(), Metrics: NewMetrics()})
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
	capture := newFakeCapture(t)
	capture.err = errors.New("operation not permitted")
	p, err := New(Config{Client: fake.NewClientset(), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Capture: capture, Dialer: newFakeDialer(), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err == nil || !errors.Is(err, capture.err) {
		t.Errorf("Run: %v, want the capture's error", err)
	}
	if _, removed := capture.counts(); removed != 1 {
		t.Errorf("capture removed %d times after failing, want 1", removed)
	}
}

// TestPortalRetriesListen: a port whose listener fails to open is retried;
// the portal is ready once it is open.
func TestPortalRetriesListen(t *testing.T) {
	capture := newFakeCapture(t)
	capture.listenErr = errors.New("too many open files")
	sl := slice("ns", discoveryv1.AddressTypeIPv4, []discoveryv1.EndpointPort{tcp(22)}, podEndpoint("a", true, "100.96.1.2"))
	p, err := New(Config{Client: fake.NewClientset(sl), PodCIDR: netip.MustParsePrefix("100.96.0.0/16"),
		Capture: capture, Dialer: newFakeDialer(), Metrics: NewMetrics()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()
	defer func() { cancel(); waitRun(t, runErr) }()
	testwait.Eventually(t, "a failed listen retried", func() bool {
		capture.mu.Lock()
		defer capture.mu.Unlock()
		return capture.listenCalls >= 2
	})
	if p.Ready() {
		t.Error("ready without a listener")
	}
	capture.mu.Lock()
	capture.listenErr = nil
	capture.mu.Unlock()
	capture.listener(t, 22)
	testwait.Eventually(t, "portal ready", p.Ready)
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
