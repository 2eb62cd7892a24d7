package svcrelay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/remote-build-nodes/rbn/internal/connrelay"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/podforward"
)

// Defaults of Config's timeouts.
const (
	DefaultDialTimeout   = 10 * time.Second
	DefaultHeaderTimeout = 10 * time.Second
)

// DialFunc dials a Service's address; net.Dialer's DialContext is one.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config configures a Relay; zero durations and a nil Dial take the
// defaults.
type Config struct {
	// Resolver finds a route's address. Required.
	Resolver Resolver
	// Metrics counts connections and bytes. Required: Relays of all pods
	// share one.
	Metrics *Metrics
	// DialTimeout bounds the dial of a Service's address
	// (DefaultDialTimeout).
	DialTimeout time.Duration
	// HeaderTimeout bounds the wait for a connection's header
	// (DefaultHeaderTimeout): a forwarder writes it at once, so a silent
	// connection is stuck or not a forwarder's.
	HeaderTimeout time.Duration
	// Dial dials the Service's address ((&net.Dialer{}).DialContext); tests
	// inject theirs.
	Dial DialFunc
}

// Relay relays connections from pods' forwarders to cluster Services.
// One Relay serves any number of pods and listeners at once.
type Relay struct {
	resolver      Resolver
	metrics       *Metrics
	dialTimeout   time.Duration
	headerTimeout time.Duration
	dial          DialFunc
}

// New validates cfg, reporting every problem at once, and fills in its
// defaults.
func New(cfg Config) (*Relay, error) {
	var errs []error
	if cfg.Resolver == nil {
		errs = append(errs, errors.New("resolver is required"))
	}
	if cfg.Metrics == nil {
		errs = append(errs, errors.New("metrics are required"))
	}
	if cfg.DialTimeout < 0 {
		errs = append(errs, fmt.Errorf("dial timeout %s is negative", cfg.DialTimeout))
	}
	if cfg.HeaderTimeout < 0 {
		errs = append(errs, fmt.Errorf("header timeout %s is negative", cfg.HeaderTimeout))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("service relay config: %w", err)
	}
	r := &Relay{
		resolver:      cfg.Resolver,
		metrics:       cfg.Metrics,
		dialTimeout:   cfg.DialTimeout,
		headerTimeout: cfg.HeaderTimeout,
		dial:          cfg.Dial,
	}
	if r.dialTimeout == 0 {
		r.dialTimeout = DefaultDialTimeout
	}
	if r.headerTimeout == 0 {
		r.headerTimeout = DefaultHeaderTimeout
	}
	if r.dial == nil {
		r.dial = (&net.Dialer{}).DialContext
	}
	return r, nil
}

// Serve relays the connections accepted on ln (the pod's SSH remote
// forward) by routes, a copy of which it keeps. It returns nil once ctx
// ends, having closed ln; connections being relayed end with ctx too, but
// Serve does not wait for them. When ln fails (the SSH connection was
// lost) Serve closes it and returns the error, so that the caller can
// listen anew once the connection is back; relays under way go on until
// they end or ctx does.
func (r *Relay) Serve(ctx context.Context, ln net.Listener, pod string, routes Routes) error {
	routes = maps.Clone(routes)
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			_ = ln.Close()
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept cluster-Service connections of pod %s on %s: %w", pod, ln.Addr(), err)
		}
		go r.handle(ctx, c, pod, routes)
	}
}

// handle relays one accepted connection and closes it. Every outcome is
// counted before the connection closes, so that a peer that saw the close
// sees the count.
func (r *Relay) handle(ctx context.Context, c net.Conn, pod string, routes Routes) {
	r.metrics.active.Inc()
	defer r.metrics.active.Dec()
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	defer stop()
	log := logging.FromContext(ctx).With("pod", pod)
	fail := func(reason string, err error, args ...any) {
		r.metrics.connections.WithLabelValues(reason).Inc()
		log.Warn("cluster-Service connection failed", append(args, "reason", reason, "err", err)...)
		_ = c.Close()
	}

	// A timer ends the wait for the header rather than a read deadline: an
	// SSH channel's connection does not support deadlines. It counts the
	// failure itself, before closing c, which is what ends the read.
	timer := time.AfterFunc(r.headerTimeout, func() {
		fail(ReasonHeader, fmt.Errorf("no header within %s", r.headerTimeout))
	})
	br := bufio.NewReaderSize(c, podforward.MaxHeaderLen)
	listen, err := podforward.ReadHeader(br)
	if !timer.Stop() {
		return // fired: counted, and c is closed whatever the read got
	}
	if err != nil {
		fail(ReasonHeader, err)
		return
	}
	route, ok := routes[listen]
	if !ok {
		fail(ReasonUnknownRoute, errors.New("no route for the header's address"), "listen", listen)
		return
	}
	log = log.With("listen", listen, "service", route.Namespace+"/"+route.Service, "port", route.Port)
	addr, err := r.resolver.Resolve(ctx, route)
	if err != nil {
		reason := ReasonResolve
		if re, ok := errors.AsType[*RouteError](err); ok {
			reason = re.Reason
		}
		fail(reason, err)
		return
	}
	dctx, cancel := context.WithTimeout(ctx, r.dialTimeout)
	target, err := r.dial(dctx, "tcp", addr)
	cancel()
	if err != nil {
		fail(ReasonDial, err, "addr", addr)
		return
	}
	stopTarget := context.AfterFunc(ctx, func() { _ = target.Close() })
	defer stopTarget()
	r.metrics.connections.WithLabelValues(ResultRelayed).Inc()
	start := time.Now()
	to, from, err := connrelay.Relay(
		connrelay.Side{Conn: c, Reader: br, Written: addTo(r.metrics.bytes.WithLabelValues(directionFrom))},
		connrelay.Side{Conn: target, Written: addTo(r.metrics.bytes.WithLabelValues(directionTo))})
	log.Debug("cluster-Service connection relayed", "addr", addr, "bytesToService", to, "bytesFromService", from,
		"duration", time.Since(start), "err", err)
}

// addTo counts bytes into c.
func addTo(c prometheus.Counter) func(int) { return func(n int) { c.Add(float64(n)) } }
