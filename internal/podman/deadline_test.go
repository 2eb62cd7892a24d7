package podman

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/containers/podman/v5/pkg/specgen"
	clocktesting "k8s.io/utils/clock/testing"
)

// openConns counts the forward's streams to the host that are open.
type openConns struct {
	mu      sync.Mutex
	n       int
	changed chan struct{}
}

func (o *openConns) wrap(dial DialFunc) DialFunc {
	return func(ctx context.Context) (net.Conn, error) {
		c, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		o.add(1)
		return &countedConn{Conn: c, o: o}, nil
	}
}

func (o *openConns) add(d int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.n += d
	close(o.changed)
	o.changed = make(chan struct{})
}

// awaitNone waits until no stream is open, for at most a while.
func (o *openConns) awaitNone(t *testing.T) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		o.mu.Lock()
		n, changed := o.n, o.changed
		o.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%d stream(s) to the host still open: a call podman never answered holds one", n)
		}
	}
}

type countedConn struct {
	net.Conn
	o    *openConns
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.o.add(-1) })
	return c.Conn.Close()
}

// A call podman never answers ends with a TimeoutError when its deadline
// passes (RequestTimeout, ImagePullTimeout for a pull, RequestTimeout plus
// the stop timeout asked for a stop), counts as an error, and leaves no
// stream to the host open behind it.
func TestCallDeadlines(t *testing.T) {
	// short must leave the request time to reach the fake podman on a
	// loaded machine (the test checks it did): at 100 ms a pull's missed
	// it once under the race detector beside an e2e run.
	const short = 500 * time.Millisecond
	tests := []struct {
		name      string
		route     string
		call      func(context.Context, *Client) error
		op        string
		requestTO time.Duration
		pullTO    time.Duration
		wantAfter time.Duration
		// unconnected: the call is Connect's.
		unconnected bool
	}{{
		name:  "connect",
		route: "GET /_ping",
		call:  func(ctx context.Context, c *Client) error { return c.Connect(ctx) },
		op:    opConnect, requestTO: short, pullTO: time.Hour, wantAfter: short, unconnected: true,
	}, {
		name:  "pod create",
		route: "POST /pods/create",
		call: func(ctx context.Context, c *Client) error {
			_, err := c.CreatePod(ctx, &specgen.PodSpecGenerator{PodBasicConfig: specgen.PodBasicConfig{Name: "p"}})
			return err
		},
		op: opPodCreate, requestTO: short, pullTO: time.Hour, wantAfter: short,
	}, {
		name:  "pull: its own deadline",
		route: "POST /images/pull",
		call: func(ctx context.Context, c *Client) error {
			_, err := c.PullImage(ctx, "registry.test/app:1", nil)
			return err
		},
		op: opImagePull, requestTO: time.Hour, pullTO: short, wantAfter: short,
	}, {
		name:  "stop: the stop timeout on top",
		route: "POST /containers/c/stop",
		call:  func(ctx context.Context, c *Client) error { return c.StopContainer(ctx, "c", 900*time.Millisecond) },
		op:    opContainerStop, requestTO: short, pullTO: time.Hour, wantAfter: short + time.Second,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The handler ignores its request's end, as a hung podman does.
			hung := make(chan struct{})
			entered := make(chan struct{}, 1)
			conns := &openConns{changed: make(chan struct{})}
			c := fakePodmanWith(t, clocktesting.NewFakeClock(time.Unix(1_000_000, 0)), map[string]http.HandlerFunc{
				tt.route: func(http.ResponseWriter, *http.Request) {
					entered <- struct{}{}
					<-hung
				},
			}, func(cfg *Config) {
				cfg.RequestTimeout, cfg.ImagePullTimeout = tt.requestTO, tt.pullTO
				cfg.Dial = conns.wrap(cfg.Dial)
			})
			t.Cleanup(func() { close(hung) }) // before the server closes: it waits for its handlers
			if !tt.unconnected {
				if err := c.Connect(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
			done := make(chan error, 1)
			go func() { done <- tt.call(t.Context(), c) }()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("%s did not return while podman did not answer", tt.op)
			}
			select {
			case <-entered:
			default:
				t.Fatalf("the call ended before podman had its request: %v", err)
			}
			var te *TimeoutError
			if !errors.As(err, &te) || !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want a TimeoutError", err)
			}
			if te.After != tt.wantAfter {
				t.Errorf("deadline %s, want %s", te.After, tt.wantAfter)
			}
			want := "podman did not answer " + tt.op + " on h within " + tt.wantAfter.String()
			if err.Error() != want {
				t.Errorf("err = %q, want %q", err, want)
			}
			if got := c.CallStats()[tt.op]; got.Calls != 1 || got.Errors != 1 {
				t.Errorf("CallStats()[%s] = %+v, want one call, an error", tt.op, got)
			}
			// The pooled idle streams close on request; the abandoned one
			// must have closed already.
			c.mu.Lock()
			closeIdle(c.conn)
			c.mu.Unlock()
			conns.awaitNone(t)
		})
	}
}

// Calls that carry a stream have no deadline of their own; a pull has
// its own; stops and removals add what they ask for (tested above).
func TestBudget(t *testing.T) {
	c := &Client{cfg: Config{RequestTimeout: time.Minute, ImagePullTimeout: time.Hour}}
	for op, want := range map[string]time.Duration{
		opPodCreate: time.Minute, opContainerInspect: time.Minute, opPing: time.Minute, opInfo: time.Minute,
		opContainerStats: time.Minute, opExecCreate: time.Minute,
		opImagePull: time.Hour,
		opLogs:      0, opEvents: 0, opCopyInto: 0, opCopyFrom: 0,
	} {
		if got := c.budget(op); got != want {
			t.Errorf("budget(%s) = %s, want %s", op, got, want)
		}
	}
}
