// Package podforward is rbn-forward's relay and its wire protocol. A pod on a
// build host cannot reach cluster Services, so rbn-kubelet opens an SSH
// remote forward to a Unix socket on the host and runs rbn-forward in the
// pod's network namespace: it listens on the loopback addresses the pod's
// /etc/hosts gives the Services, and relays each connection to the socket
// after one header line (see WriteHeader) naming the address the connection
// came in on, from which rbn-kubelet picks the Service to dial.
//
// It uses the standard library only: rbn-forward is a static binary in an
// image with nothing else in it.
package podforward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/remote-build-nodes/rbn/internal/connrelay"
)

// DefaultDialTimeout bounds connecting to the socket when Config.DialTimeout
// is zero.
const DefaultDialTimeout = 10 * time.Second

// Config is what a Forwarder serves.
type Config struct {
	// Socket is the Unix socket every connection is relayed to: the end of
	// rbn-kubelet's SSH remote forward, bind-mounted into the container.
	Socket string
	// Listen are the IPv4 loopback address:port pairs to accept on. Port 0
	// picks a free port (see Forwarder.Addrs).
	Listen []string
	// Logger receives the forwarder's logs; nil discards them.
	Logger *slog.Logger
	// DialTimeout bounds connecting to Socket; zero means DefaultDialTimeout.
	DialTimeout time.Duration
}

// Forwarder accepts TCP connections on loopback addresses and relays each to
// a Unix socket. Create it with New; Run it once.
type Forwarder struct {
	socket      string
	listen      []string
	log         *slog.Logger
	dialTimeout time.Duration

	started atomic.Bool
	ready   chan struct{}
	addrs   atomic.Pointer[[]string]
	relayed atomic.Uint64
}

// New validates cfg, reporting every problem at once.
func New(cfg Config) (*Forwarder, error) {
	var errs []error
	if cfg.Socket == "" {
		errs = append(errs, errors.New("socket: required"))
	}
	if len(cfg.Listen) == 0 {
		errs = append(errs, errors.New("listen: at least one address required"))
	}
	for _, l := range cfg.Listen {
		if err := validateListen(l); err != nil {
			errs = append(errs, fmt.Errorf("listen %q: %w", l, err))
		}
	}
	if cfg.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("dial timeout %s: negative", cfg.DialTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	f := &Forwarder{
		socket:      cfg.Socket,
		listen:      append([]string(nil), cfg.Listen...),
		log:         cfg.Logger,
		dialTimeout: cfg.DialTimeout,
		ready:       make(chan struct{}),
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	if f.dialTimeout == 0 {
		f.dialTimeout = DefaultDialTimeout
	}
	return f, nil
}

// validateListen keeps the forwarder on loopback: anything else would offer
// the cluster's Services to whoever reaches the pod's address on the build
// host's network.
func validateListen(s string) error {
	ap, err := netip.ParseAddrPort(s)
	switch {
	case err != nil:
		return errors.New("not an IPv4 address:port")
	case !ap.Addr().Is4():
		return errors.New("not an IPv4 address")
	case !ap.Addr().IsLoopback():
		return errors.New("not a loopback address")
	case ap.String() != s:
		return fmt.Errorf("not in canonical form (%s)", ap)
	}
	return nil
}

// Ready is closed once every listener is open; Addrs is valid from then on.
func (f *Forwarder) Ready() <-chan struct{} { return f.ready }

// Addrs returns the bound address of each Config.Listen entry, in order (a
// port 0 replaced by the port picked), or nil before Ready is closed.
func (f *Forwarder) Addrs() []string {
	if p := f.addrs.Load(); p != nil {
		return append([]string(nil), *p...)
	}
	return nil
}

// Relayed returns how many connections have been handed to the socket (their
// header written).
func (f *Forwarder) Relayed() uint64 { return f.relayed.Load() }

// Run opens every listener, then relays connections until ctx ends. It opens
// all listeners before accepting on any, so that a bad address fails the
// start instead of leaving a pod with some Services reachable and others not.
// When ctx ends it closes the listeners and the active connections and
// returns nil once every relay has ended. A listener that fails for good
// stops all of them and its error is returned.
func (f *Forwarder) Run(ctx context.Context) error {
	if !f.started.CompareAndSwap(false, true) {
		return errors.New("podforward: Run called twice")
	}
	lns, err := f.openListeners(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	closeListeners := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	stop := context.AfterFunc(ctx, closeListeners)
	defer stop()

	addrs := make([]string, len(lns))
	for i, ln := range lns {
		// Unmap: the net package may hold an IPv4 address in 16 bytes,
		// which would print as [::ffff:a.b.c.d]:port.
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		addrs[i] = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String()
	}
	f.addrs.Store(&addrs)
	close(f.ready)
	f.log.Info("forwarding", "listen", addrs, "socket", f.socket)

	var loops, conns sync.WaitGroup
	errs := make([]error, len(lns))
	for i, ln := range lns {
		loops.Go(func() {
			if err := f.serve(ctx, ln, addrs[i], &conns); err != nil {
				errs[i] = err
				cancel()
			}
		})
	}
	loops.Wait()
	conns.Wait()
	return errors.Join(errs...)
}

func (f *Forwarder) openListeners(ctx context.Context) ([]*net.TCPListener, error) {
	var lc net.ListenConfig
	lns := make([]*net.TCPListener, 0, len(f.listen))
	for _, addr := range f.listen {
		ln, err := lc.Listen(ctx, "tcp4", addr)
		if err != nil {
			for _, opened := range lns {
				opened.Close()
			}
			// net.OpError repeats the address; keep the cause only.
			if oe := (*net.OpError)(nil); errors.As(err, &oe) && oe.Err != nil {
				err = oe.Err
			}
			return nil, fmt.Errorf("listen on %s: %w", addr, err)
		}
		lns = append(lns, ln.(*net.TCPListener))
	}
	return lns, nil
}

// serve accepts on ln until ctx ends, starting a relay (counted in conns) for
// every connection.
func (f *Forwarder) serve(ctx context.Context, ln *net.TCPListener, listen string, conns *sync.WaitGroup) error {
	var backoff time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !outOfResources(err) {
				return fmt.Errorf("accept on %s: %w", listen, err)
			}
			// Out of file descriptors or memory: the pending connection
			// stays queued; wait for relays to end rather than fail the
			// whole pod's Service access.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			f.log.Warn("accept failed; retrying", "listen", listen, "retryIn", backoff, "err", err)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		backoff = 0
		conns.Go(func() { f.handle(ctx, c, listen) })
	}
}

func outOfResources(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// handle relays one accepted connection to the socket.
func (f *Forwarder) handle(ctx context.Context, client *net.TCPConn, listen string) {
	log := f.log.With("listen", listen, "client", client.RemoteAddr().String())
	d := net.Dialer{Timeout: f.dialTimeout}
	c, err := d.DialContext(ctx, "unix", f.socket)
	if err != nil {
		// Nothing listens while rbn-kubelet's SSH connection to the host is
		// down. A reset, not an orderly close, so that the client sees a
		// failed connection rather than a Service that answered nothing.
		// Logged first, so the line exists by the time the client sees it.
		if ctx.Err() == nil {
			log.Warn("socket unreachable; connection reset", "socket", f.socket, "err", err)
		}
		reset(client)
		return
	}
	upstream := c.(*net.UnixConn)
	stop := context.AfterFunc(ctx, func() {
		client.Close()
		upstream.Close()
	})
	defer stop()
	if err := WriteHeader(upstream, listen); err != nil {
		if ctx.Err() == nil {
			log.Warn("write header failed; connection reset", "socket", f.socket, "err", err)
		}
		reset(client)
		upstream.Close()
		return
	}
	f.relayed.Add(1)
	sent, received, err := connrelay.Relay(connrelay.Side{Conn: client}, connrelay.Side{Conn: upstream})
	log.Debug("connection ended", "sent", sent, "received", received, "err", err)
}

// reset closes c with SO_LINGER 0, which sends a TCP reset.
func reset(c *net.TCPConn) {
	c.SetLinger(0)
	c.Close()
}
