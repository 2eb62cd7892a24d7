package podman

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/containers/podman/v5/pkg/bindings"

	"github.com/remote-build-nodes/rbn/internal/callstats"
)

// DialFunc opens a stream to the host's podman API socket.
type DialFunc func(ctx context.Context) (net.Conn, error)

// Config configures a Client.
type Config struct {
	// Name identifies the host in logs and in the local socket's name.
	Name string
	// Dial opens a stream to the remote podman socket.
	Dial DialFunc
	// SocketDir is a private directory for the local end of the forward.
	// Default: a new directory under os.TempDir().
	SocketDir string
	Logger    *slog.Logger
	// Clock times the API calls (CallStats). Default: the real clock.
	Clock clock.PassiveClock
	// RequestTimeout bounds each API call that does not carry a stream, as
	// kubelet's runtime-request-timeout bounds its CRI calls: a hung podman
	// (or a helper of it) must not hold the caller for good. Stopping and
	// removing get the stop timeout they ask for on top. Calls that carry
	// a stream (logs, events, archive copies, exec and attach sessions) have
	// no such bound. Default: DefaultRequestTimeout.
	RequestTimeout time.Duration
	// ImagePullTimeout bounds a pull as a whole: the libpod API reports a
	// pull's progress a line per blob, not by bytes, so a large layer on a
	// slow link shows none for long, and a pull cannot be bounded by the
	// lack of it. Default: DefaultImagePullTimeout.
	ImagePullTimeout time.Duration
}

// The defaults of Config's timeouts: kubelet's runtime-request-timeout, and
// an hour for a pull (a 10 GB image at 40 Mbit/s takes about 35 minutes).
const (
	DefaultRequestTimeout   = 2 * time.Minute
	DefaultImagePullTimeout = time.Hour
)

// Client is a podman API client for one host.
//
// The bindings only accept a URI and ping it before handing out a
// connection, so they cannot be given a custom dialer. Client therefore
// listens on a private local unix socket and forwards every accepted
// connection to a fresh stream from Dial; the bindings use that socket as if
// podman ran locally. A forwarded connection ends when its local end
// closes: the bindings' calls that hijack their connection and half-close
// it (their exec and attach) would not work through it, and are not used
// (see upgrade).
type Client struct {
	cfg      Config
	dir      string
	ownsDir  bool
	listener net.Listener
	uri      string
	wg       sync.WaitGroup
	calls    callstats.Recorder

	mu   sync.Mutex
	conn context.Context // bindings connection context; carries values only
	quit chan struct{}   // closed by Close: forwards in flight are cut
}

// New starts the local forward. Close releases it.
func New(cfg Config) (*Client, error) {
	if cfg.Dial == nil {
		return nil, errors.New("podman: Dial is nil")
	}
	if cfg.Name == "" {
		return nil, errors.New("podman: Name is empty")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.ImagePullTimeout <= 0 {
		cfg.ImagePullTimeout = DefaultImagePullTimeout
	}
	c := &Client{cfg: cfg, dir: cfg.SocketDir, quit: make(chan struct{})}
	if c.dir == "" {
		d, err := os.MkdirTemp("", "rbn-podman-")
		if err != nil {
			return nil, fmt.Errorf("podman: %w", err)
		}
		c.dir, c.ownsDir = d, true
	}
	path := filepath.Join(c.dir, cfg.Name+".sock")
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		c.cleanupDir()
		return nil, fmt.Errorf("podman: listen on local forward %s: %w", path, err)
	}
	c.listener = ln
	c.uri = "unix://" + path
	c.wg.Add(1)
	go c.forward()
	return c, nil
}

// Close stops the forward: connections in flight are cut, and Close
// returns once every goroutine of the forward has.
func (c *Client) Close() error {
	c.mu.Lock()
	closeIdle(c.conn)
	select {
	case <-c.quit: // closed before
	default:
		close(c.quit)
	}
	c.mu.Unlock()
	err := c.listener.Close()
	c.wg.Wait()
	c.cleanupDir()
	return err
}

func (c *Client) cleanupDir() {
	if c.ownsDir {
		_ = os.RemoveAll(c.dir)
	}
}

func (c *Client) forward() {
	defer c.wg.Done()
	for {
		local, err := c.listener.Accept()
		if err != nil {
			return
		}
		c.wg.Add(1)
		go c.pipe(local)
	}
}

// pipe relays one local connection to the host's podman socket.
func (c *Client) pipe(local net.Conn) {
	defer c.wg.Done()
	defer local.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	remote, err := c.cfg.Dial(ctx)
	cancel()
	if err != nil {
		c.cfg.Logger.Debug("podman forward: dial failed", "host", c.cfg.Name, "err", err)
		return
	}
	defer remote.Close()
	done := make(chan struct{}, 2)
	// The local end's EOF is its close, not a half-close: only the
	// bindings' HTTP client uses the forward (it never half-closes; exec
	// and attach dial on their own, see upgrade). The remote end goes with
	// it, else a request the client gave up on (its deadline passed) would
	// hold the stream, and this goroutine, until podman answered.
	go func() { _, _ = io.Copy(remote, local); remote.Close(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(local, remote); closeWrite(local); done <- struct{}{} }()
	quit := c.quit
	for copies := 2; copies > 0; {
		select {
		case <-done:
			copies--
		case <-quit:
			quit = nil
			local.Close()
			remote.Close()
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
}

// Connect (re)establishes the bindings connection, pinging the service
// within RequestTimeout.
func (c *Client) Connect(ctx context.Context) (err error) {
	defer c.begin(opConnect)(&err)
	timeout := &TimeoutError{Op: opConnect, Host: c.cfg.Name, After: c.cfg.RequestTimeout}
	dctx, cancel := context.WithTimeoutCause(ctx, c.cfg.RequestTimeout, timeout)
	defer cancel()
	// The connection keeps the context it was made with: it must hold the
	// bindings' values alone, not this call's end (nor its values).
	conn, err := bindings.NewConnection(valuesOnly{dctx}, c.uri)
	if err != nil {
		if context.Cause(dctx) == timeout {
			return timeout
		}
		return &APIError{Op: "connect", Err: err}
	}
	c.mu.Lock()
	old := c.conn
	c.conn = conn
	c.mu.Unlock()
	closeIdle(old)
	return nil
}

// closeIdle releases the pooled streams of a replaced bindings connection.
func closeIdle(conn context.Context) {
	if conn == nil {
		return
	}
	if bc, err := bindings.GetClient(conn); err == nil && bc.Client != nil {
		bc.Client.CloseIdleConnections()
	}
}

// NewStreamContext returns a fresh bindings connection for one streaming
// session: exec and attach replace the transport of the connection they run
// on, so sharing one would race with every other call.
func (c *Client) NewStreamContext(ctx context.Context) (context.Context, error) {
	conn, err := bindings.NewConnection(context.WithoutCancel(ctx), c.uri)
	if err != nil {
		return nil, &APIError{Op: "connect", Err: err}
	}
	return withValues(ctx, conn), nil
}

// valuesContext takes cancellation from one context and values first from
// another: the bindings keep their connection in a context value under an
// unexported key.
type valuesContext struct {
	context.Context
	values context.Context
}

func (v valuesContext) Value(key any) any {
	if x := v.values.Value(key); x != nil {
		return x
	}
	return v.Context.Value(key)
}

func withValues(ctx, values context.Context) context.Context {
	return valuesContext{Context: ctx, values: values}
}

// valuesOnly has the cancellation of the context it wraps and no values:
// the bindings' connection is made under it, and what it keeps is their
// values alone (Cause and AfterFunc look for a parent through Value).
type valuesOnly struct{ context.Context }

func (valuesOnly) Value(any) any { return nil }
