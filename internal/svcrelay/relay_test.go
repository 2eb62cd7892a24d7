package svcrelay

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/remote-build-nodes/rbn/internal/podforward"
	"github.com/remote-build-nodes/rbn/internal/testwait"
)

// guard bounds every wait of these tests: far beyond what a passing test
// needs, it only turns a hang into a failure.
const guard = 10 * time.Second

// resolverFunc adapts a function to Resolver.
type resolverFunc func(ctx context.Context, r Route) (string, error)

func (f resolverFunc) Resolve(ctx context.Context, r Route) (string, error) { return f(ctx, r) }

// staticResolver resolves the routes of m; any other is ServiceNotFound.
func staticResolver(m map[Route]string) Resolver {
	return resolverFunc(func(_ context.Context, r Route) (string, error) {
		if addr, ok := m[r]; ok {
			return addr, nil
		}
		return "", &RouteError{Route: r, Reason: ReasonServiceNotFound, Detail: "no such Service"}
	})
}

// target is a TCP server on 127.0.0.1 standing for a Service; handle runs
// per connection. Create targets before the serving harness, so that the
// harness's cleanup (which ends the relays) runs first.
func target(t *testing.T, handle func(c *net.TCPConn)) (addr string, accepted <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	acc := make(chan struct{}, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			acc <- struct{}{}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(guard))
				handle(c.(*net.TCPConn))
			})
		}
	})
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	return ln.Addr().String(), acc
}

// harness is a Relay serving a Unix listener that stands for the pod's SSH
// remote forward.
type harness struct {
	t      *testing.T
	m      *Metrics
	ln     net.Listener
	sock   string
	cancel context.CancelFunc
	served chan error
}

func serve(t *testing.T, cfg Config, routes Routes) *harness {
	t.Helper()
	h := &harness{t: t, m: NewMetrics(prometheus.NewRegistry()), served: make(chan error, 1)}
	cfg.Metrics = h.m
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.sock = filepath.Join(t.TempDir(), "fwd.sock")
	if h.ln, err = net.Listen("unix", h.sock); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.served <- r.Serve(ctx, h.ln, "app/builder", routes) }()
	t.Cleanup(func() {
		cancel()
		h.wait()
		// No relay outlives the test: each one's gauge share is gone.
		testwait.Eventually(t, "no active connections", func() bool { return testutil.ToFloat64(h.m.active) == 0 })
	})
	return h
}

// wait returns Serve's result.
func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.served:
		h.served <- err // for the next wait
		return err
	case <-time.After(guard):
		h.t.Fatal("Serve did not return")
		return nil
	}
}

// dial connects as the pod's forwarder does and writes first (the header
// and any payload) in one write.
func (h *harness) dial(first string) *net.UnixConn {
	h.t.Helper()
	c, err := net.Dial("unix", h.sock)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(guard))
	if first != "" {
		if _, err := io.WriteString(c, first); err != nil {
			h.t.Fatal(err)
		}
	}
	return c.(*net.UnixConn)
}

func (h *harness) count(result string) float64 {
	return testutil.ToFloat64(h.m.connections.WithLabelValues(result))
}

func (h *harness) bytes(direction string) float64 {
	return testutil.ToFloat64(h.m.bytes.WithLabelValues(direction))
}

func header(listen string) string { return podforward.HeaderPrefix + listen + "\n" }

// readAll reads c to its end, failing on anything but EOF.
func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(b)
}

// TestServeRelaysPayloadSentWithHeader: bytes that arrive in the header's
// write (buffered while the header was read) reach the Service first and
// whole, and the answer comes back.
func TestServeRelaysPayloadSentWithHeader(t *testing.T) {
	payload := make([]byte, 1<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	got := make(chan []byte, 1)
	addr, _ := target(t, func(c *net.TCPConn) {
		b, _ := io.ReadAll(c)
		got <- b
		_, _ = io.WriteString(c, "got it")
	})
	route := Route{"app", "db", 5432}
	h := serve(t, Config{Resolver: staticResolver(map[Route]string{route: addr})}, Routes{"127.0.100.1:5432": route})

	c := h.dial(header("127.0.100.1:5432") + string(payload))
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if answer := readAll(t, c); answer != "got it" {
		t.Errorf("answer %q, want %q", answer, "got it")
	}
	if b := <-got; !bytes.Equal(b, payload) {
		t.Errorf("service got %d bytes, want the %d sent with the header (first lost: %v)", len(b), len(payload), len(b) < len(payload))
	}
	if n := h.count(ResultRelayed); n != 1 {
		t.Errorf("relayed connections %v, want 1", n)
	}
	if n := h.bytes(directionTo); n != float64(len(payload)) {
		t.Errorf("bytes to_service %v, want %d", n, len(payload))
	}
	if n := h.bytes(directionFrom); n != float64(len("got it")) {
		t.Errorf("bytes from_service %v, want %d", n, len("got it"))
	}
}

// TestServeHalfClose: a side that ends its writing still reads the other's
// answer, whichever side ends first.
func TestServeHalfClose(t *testing.T) {
	route := Route{"app", "web", 80}
	routes := Routes{"127.0.100.1:80": route}

	t.Run("pod first", func(t *testing.T) {
		addr, _ := target(t, func(c *net.TCPConn) {
			b, err := io.ReadAll(c) // ends only at the pod's half-close
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "answer to "+string(b))
			_ = c.CloseWrite()
		})
		h := serve(t, Config{Resolver: staticResolver(map[Route]string{route: addr})}, routes)
		c := h.dial(header("127.0.100.1:80") + "question")
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, c); got != "answer to question" {
			t.Errorf("pod read %q", got)
		}
	})

	t.Run("service first", func(t *testing.T) {
		got := make(chan string, 1)
		addr, _ := target(t, func(c *net.TCPConn) {
			_, _ = io.WriteString(c, "banner")
			_ = c.CloseWrite()
			b, _ := io.ReadAll(c)
			got <- string(b)
		})
		h := serve(t, Config{Resolver: staticResolver(map[Route]string{route: addr})}, routes)
		c := h.dial(header("127.0.100.1:80"))
		// The pod sees the service's EOF and still writes after it.
		if b := readAll(t, c); b != "banner" {
			t.Fatalf("pod read %q, want banner", b)
		}
		if _, err := io.WriteString(c, "late words"); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		select {
		case b := <-got:
			if b != "late words" {
				t.Errorf("service read %q, want the pod's words after its own EOF", b)
			}
		case <-time.After(guard):
			t.Fatal("service did not read the pod's half-close")
		}
	})
}

// TestServeFailures: a connection that cannot be relayed is closed without
// a byte and counted by its reason.
func TestServeFailures(t *testing.T) {
	route := Route{"app", "db", 5432}
	routes := Routes{"127.0.100.1:5432": route}
	errCache := errors.New("cache not synced")
	for _, tc := range []struct {
		name   string
		first  string // written by the pod; "" writes nothing
		cfg    Config
		reason string
	}{
		{name: "bad header", first: "GET / HTTP/1.1\r\nHost: db\r\n\r\n", reason: ReasonHeader},
		{name: "header too long", first: strings.Repeat("a", 300), reason: ReasonHeader},
		{name: "header timeout", cfg: Config{HeaderTimeout: 20 * time.Millisecond}, reason: ReasonHeader},
		{name: "unknown route", first: header("127.0.100.9:5432"), reason: ReasonUnknownRoute},
		{name: "route error", first: header("127.0.100.1:5432"),
			cfg:    Config{Resolver: staticResolver(nil)},
			reason: ReasonServiceNotFound},
		{name: "resolve error", first: header("127.0.100.1:5432"),
			cfg:    Config{Resolver: resolverFunc(func(context.Context, Route) (string, error) { return "", errCache })},
			reason: ReasonResolve},
		{name: "dial refused", first: header("127.0.100.1:5432"),
			cfg: Config{Dial: func(context.Context, string, string) (net.Conn, error) {
				return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
			}},
			reason: ReasonDial},
		{name: "dial timeout", first: header("127.0.100.1:5432"),
			cfg: Config{DialTimeout: 20 * time.Millisecond, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
				<-ctx.Done() // a Service address that never answers
				return nil, ctx.Err()
			}},
			reason: ReasonDial},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, accepted := target(t, func(*net.TCPConn) {})
			if tc.cfg.Resolver == nil {
				tc.cfg.Resolver = staticResolver(map[Route]string{route: addr})
			}
			h := serve(t, tc.cfg, routes)
			c := h.dial(tc.first)
			b, err := io.ReadAll(c)
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				t.Fatal("connection not closed")
			}
			// A Unix socket closed with unread bytes reads as reset here:
			// closed all the same.
			if len(b) > 0 {
				t.Errorf("pod read %q from a failed connection", b)
			}
			if n := h.count(tc.reason); n != 1 {
				t.Errorf("connections %s = %v, want 1", tc.reason, n)
			}
			if n := h.count(ResultRelayed); n != 0 {
				t.Errorf("relayed connections %v, want 0", n)
			}
			select {
			case <-accepted:
				t.Error("the Service got a connection")
			default:
			}
		})
	}
}

// TestServeCancel: Serve returns nil once ctx ends, having closed the
// listener, and relays under way end with it.
func TestServeCancel(t *testing.T) {
	route := Route{"app", "web", 80}
	serviceEnded := make(chan struct{})
	addr, _ := target(t, func(c *net.TCPConn) {
		_, _ = io.WriteString(c, "hello")
		_, _ = io.Copy(io.Discard, c) // until the relay closes
		close(serviceEnded)
	})
	h := serve(t, Config{Resolver: staticResolver(map[Route]string{route: addr})}, Routes{"127.0.100.1:80": route})
	c := h.dial(header("127.0.100.1:80"))
	if _, err := io.ReadFull(c, make([]byte, len("hello"))); err != nil {
		t.Fatal(err)
	}

	h.cancel()
	if err := h.wait(); err != nil {
		t.Fatalf("Serve after cancel: %v, want nil", err)
	}
	if _, err := h.ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener still open after Serve returned: Accept err %v", err)
	}
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("pod's connection not closed: %v", err)
	}
	select {
	case <-serviceEnded:
	case <-time.After(guard):
		t.Fatal("the Service's connection was not closed")
	}
}

// TestServeListenerFails: when the listener fails underneath (the SSH
// connection was lost), Serve returns the error for the caller to listen
// anew.
func TestServeListenerFails(t *testing.T) {
	h := serve(t, Config{Resolver: staticResolver(nil)}, Routes{})
	if err := h.ln.Close(); err != nil {
		t.Fatal(err)
	}
	err := h.wait()
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve = %v, want the listener's error", err)
	}
	if !strings.Contains(err.Error(), "app/builder") {
		t.Errorf("error %q does not name the pod", err)
	}
	if _, statErr := os.Stat(h.sock); statErr == nil {
		t.Errorf("socket %s still there", h.sock)
	}
}

// TestServeConcurrentRoutes: two connections to different routes are
// relayed at once, each to its own Service.
func TestServeConcurrentRoutes(t *testing.T) {
	echo := func(name string) func(c *net.TCPConn) {
		return func(c *net.TCPConn) {
			_, _ = io.WriteString(c, name+":")
			_, _ = io.Copy(c, c)
			_ = c.CloseWrite()
		}
	}
	dbAddr, _ := target(t, echo("db"))
	webAddr, _ := target(t, echo("web"))
	db, web := Route{"app", "db", 5432}, Route{"other", "web", 80}
	h := serve(t, Config{Resolver: staticResolver(map[Route]string{db: dbAddr, web: webAddr})},
		Routes{"127.0.100.1:5432": db, "127.0.100.2:80": web})

	cdb := h.dial(header("127.0.100.1:5432"))
	cweb := h.dial(header("127.0.100.2:80"))
	for c, want := range map[net.Conn]string{cdb: "db:", cweb: "web:"} {
		b := make([]byte, len(want))
		if _, err := io.ReadFull(c, b); err != nil || string(b) != want {
			t.Fatalf("greeting %q, %v; want %q", b, err, want)
		}
	}
	// Both are set up and neither has ended.
	if n := testutil.ToFloat64(h.m.active); n != 2 {
		t.Errorf("active connections %v, want 2", n)
	}
	var wg sync.WaitGroup
	for c, name := range map[*net.UnixConn]string{cdb: "db", cweb: "web"} {
		wg.Go(func() {
			if _, err := io.WriteString(c, "to "+name); err != nil {
				t.Error(err)
				return
			}
			_ = c.CloseWrite()
			if got, err := io.ReadAll(c); err != nil || string(got) != "to "+name {
				t.Errorf("%s echoed %q, %v", name, got, err)
			}
		})
	}
	wg.Wait()
	if n := h.count(ResultRelayed); n != 2 {
		t.Errorf("relayed connections %v, want 2", n)
	}
}

func TestNewValidates(t *testing.T) {
	_, err := New(Config{DialTimeout: -time.Second, HeaderTimeout: -time.Second})
	if err == nil {
		t.Fatal("New accepted an empty config")
	}
	for _, want := range []string{"resolver", "metrics", "dial timeout", "header timeout"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not report %s", err, want)
		}
	}
	r, err := New(Config{Resolver: staticResolver(nil), Metrics: NewMetrics(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if r.dialTimeout != DefaultDialTimeout || r.headerTimeout != DefaultHeaderTimeout || r.dial == nil {
		t.Errorf("defaults not filled in: %+v", r)
	}
}
