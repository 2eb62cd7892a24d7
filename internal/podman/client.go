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
}

// Client is a podman API client for one host.
//
// The bindings only accept a URI and ping it before handing out a
// connection, so they cannot be given a custom dialer. Client therefore
// listens on a private local unix socket and forwards every accepted
// connection to a fresh stream from Dial; the bindings use that socket as if
// podman ran locally. Streaming calls (exec, attach) that hijack their
// connection work unchanged.
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
	go func() { _, _ = io.Copy(remote, local); closeWrite(remote); done <- struct{}{} }()
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

// Connect (re)establishes the bindings connection, pinging the service.
func (c *Client) Connect(ctx context.Context) (err error) {
	defer c.begin(opConnect)(&err)
	conn, err := bindings.NewConnection(context.WithoutCancel(ctx), c.uri)
	if err != nil {
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
