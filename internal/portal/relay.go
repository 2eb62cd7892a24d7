package portal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"

	"github.com/remote-build-nodes/rbn/internal/connrelay"
	"github.com/remote-build-nodes/rbn/internal/logging"
	"github.com/remote-build-nodes/rbn/internal/spdyconn"
)

// PortForwarder opens a port-forward connection to a pod.
type PortForwarder interface {
	Dial(pod Pod) (httpstream.Connection, error)
}

// RawDialer connects to a pod's port through rbn's raw port-forward
// (spdyconn.RawPortForward): a connection per relayed connection, and the
// reader of what the server sent after its answer. An error wrapping
// spdyconn.ErrRawUnsupported: not served for the pod; the relay takes the
// port-forward protocol's path.
type RawDialer interface {
	DialRaw(pod Pod, port int32) (net.Conn, io.Reader, error)
}

// rawRetry is how long a node whose rbn-kubelet did not serve the raw
// port-forward is relayed to over SPDY before the raw path is tried again
// (it may have been upgraded since).
const rawRetry = time.Minute

// APIPortForwarder dials the pods/portforward subresource through the
// apiserver, which proxies it to the pod's kubelet (rbn-kubelet, which
// opens an SSH direct-tcpip channel per stream): kubectl port-forward's
// path.
type APIPortForwarder struct {
	pods rest.Interface
	cfg  *rest.Config
}

// NewAPIPortForwarder dials with cfg's credentials; pods is a core/v1 REST
// client (CoreV1().RESTClient()) that builds the subresource's URL.
func NewAPIPortForwarder(cfg *rest.Config, pods rest.Interface) (*APIPortForwarder, error) {
	if _, err := rest.TLSConfigFor(cfg); err != nil {
		return nil, fmt.Errorf("port-forward transport: %w", err)
	}
	return &APIPortForwarder{pods: pods, cfg: rest.CopyConfig(cfg)}, nil
}

// Dial opens a port-forward connection to pod.
func (f *APIPortForwarder) Dial(pod Pod) (httpstream.Connection, error) {
	u := f.pods.Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	conn, err := spdyconn.Dial(f.cfg, http.MethodPost, u, portforward.PortForwardProtocolV1Name)
	if err != nil {
		return nil, fmt.Errorf("port-forward to pod %s: %w", pod, err)
	}
	return conn, nil
}

// Relay relays accepted connections to pods, over one port-forward
// connection per pod, each relayed connection a pair of streams on it (the
// port-forward protocol: an error stream and a data stream sharing a
// request ID). A pod's connection is dialed when a relayed connection
// first needs it, again when the last one closed, and closed when the pod
// is no longer retained (Retain) and no relayed connection uses it.
type Relay struct {
	dialer  PortForwarder
	metrics *Metrics
	nextID  atomic.Int64
	// streamTimeout bounds a request's stream creation (DefaultStreamTimeout).
	streamTimeout time.Duration

	mu       sync.Mutex
	pods     map[Pod]*podConn
	retained map[Pod]bool
	// noRaw holds the nodes whose rbn-kubelet did not serve the raw
	// port-forward, with when to try it again.
	noRaw map[string]time.Time
	now   func() time.Time
}

// podConn is a pod's port-forward connection and its users.
type podConn struct {
	dial   *dialing // the latest dial; nil before the first
	active int      // relayed connections in Serve
}

// dialing is one dial that concurrent connections share.
type dialing struct {
	done chan struct{} // closed when conn, err are set
	conn httpstream.Connection
	err  error
}

// usable tells whether d is under way or gave a connection still open.
func (d *dialing) usable() bool {
	select {
	case <-d.done:
	default:
		return true
	}
	if d.err != nil {
		return false
	}
	select {
	case <-d.conn.CloseChan():
		return false
	default:
		return true
	}
}

func (d *dialing) close() {
	select {
	case <-d.done:
		if d.err == nil {
			_ = d.conn.Close()
		}
	default: // under way: its users close it
	}
}

// DefaultStreamTimeout bounds the creation of a request's streams on a
// pod's port-forward connection: a connection that lay idle can be dead
// without a word (seen after its build host's SSH connection was cut and
// came back), and SPDY's own wait is 30 s, longer than an ssh client waits
// for the server's banner.
const DefaultStreamTimeout = 5 * time.Second

// NewRelay relays through dialer and counts into m.
func NewRelay(dialer PortForwarder, m *Metrics) *Relay {
	return &Relay{dialer: dialer, metrics: m, streamTimeout: DefaultStreamTimeout, pods: map[Pod]*podConn{}, retained: map[Pod]bool{},
		noRaw: map[string]time.Time{}, now: time.Now}
}

// Serve relays client to t until the pod closes its side, the kubelet
// reports an error, or ctx ends; then it closes client. When the client
// half-closes, the pod sees EOF and may still answer.
func (r *Relay) Serve(ctx context.Context, client net.Conn, t Target) {
	defer client.Close()
	log := logging.FromContext(ctx).With("pod", t.Pod.String(), "port", t.Port, "client", client.RemoteAddr().String())
	r.metrics.accepted.Inc()
	if r.serveRaw(ctx, client, t, log) {
		return
	}
	pc := r.acquire(t.Pod)
	defer r.release(t.Pod, pc)
	var conn httpstream.Connection
	var errStream, data httpstream.Stream
	for try := 0; ; try++ {
		c, fresh, err := r.connection(t.Pod, pc)
		if err != nil {
			r.metrics.failed.WithLabelValues(ReasonDial).Inc()
			log.Warn("port-forward dial failed", "err", err)
			return
		}
		if errStream, data, err = r.streams(c, t.Port); err == nil {
			conn = c
			break
		}
		// A connection that refuses streams is of no more use: closed, the
		// next request dials anew. This one tries once more on a new
		// connection when the failed one had been used before (it may have
		// died while idle).
		_ = c.Close()
		if fresh || try > 0 {
			r.metrics.failed.WithLabelValues(ReasonStream).Inc()
			log.Warn("port-forward stream failed", "err", err)
			return
		}
		log.Info("port-forward stream failed on a connection used before: dialing anew", "err", err)
	}
	defer conn.RemoveStreams(errStream, data)
	defer data.Reset()
	stop := context.AfterFunc(ctx, func() { _ = data.Reset(); _ = errStream.Reset(); _ = client.Close() })
	defer stop()

	var wg sync.WaitGroup
	wg.Go(func() {
		// The kubelet writes a message and closes the error stream when
		// it cannot reach the pod's port; it closes it empty at the end.
		msg, err := io.ReadAll(errStream)
		if err == nil && len(msg) > 0 {
			r.metrics.failed.WithLabelValues(ReasonPortForward).Inc()
			log.Warn("port-forward error", "message", string(msg))
			_ = data.Reset()
		}
	})
	wg.Go(func() {
		_, _ = io.Copy(counter{data, r.metrics.bytes.WithLabelValues("to_pod")}, client)
		_ = data.Close() // half-close: the pod reads EOF
	})
	_, _ = io.Copy(counter{client, r.metrics.bytes.WithLabelValues("from_pod")}, data)
	// The pod's side ended: so does the client's (kubectl port-forward's
	// behaviour), which also ends the copy to the pod. The kubelet closes
	// the error stream when the request ends, after any message: wait for
	// it, so that no error goes unreported.
	_ = client.Close()
	wg.Wait()
}

// serveRaw relays client to t through the raw port-forward when the
// dialer has it and t's node serves it, and says whether it did (or the
// connection failed for good); false: relay it over SPDY.
func (r *Relay) serveRaw(ctx context.Context, client net.Conn, t Target, log *slog.Logger) bool {
	raw, ok := r.dialer.(RawDialer)
	if !ok || !r.rawServed(t.Pod.Node) {
		return false
	}
	r.metrics.dials.Inc()
	conn, buffered, err := raw.DialRaw(t.Pod, t.Port)
	var refused *spdyconn.UpgradeError
	switch {
	case errors.Is(err, spdyconn.ErrRawUnsupported):
		log.Info("the pod's node does not serve the raw port-forward: relaying over SPDY", "err", err, "retryIn", rawRetry)
		r.mu.Lock()
		r.noRaw[t.Pod.Node] = r.now().Add(rawRetry)
		r.mu.Unlock()
		r.metrics.rawUnsupported.Inc()
		return false
	case errors.As(err, &refused):
		// The node's answer: no such pod there, nothing listens.
		r.metrics.failed.WithLabelValues(ReasonPortForward).Inc()
		log.Warn("port-forward error", "message", refused.Message, "status", refused.StatusCode)
		return true
	case err != nil:
		r.metrics.dialFailures.Inc()
		r.metrics.failed.WithLabelValues(ReasonDial).Inc()
		log.Warn("port-forward dial failed", "err", err)
		return true
	}
	r.metrics.raw.Inc()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close(); _ = client.Close() })
	defer stop()
	_, _, _ = connrelay.Relay(
		connrelay.Side{Conn: client, Written: counted(r.metrics.bytes.WithLabelValues("from_pod"))},
		connrelay.Side{Conn: conn, Reader: buffered, Written: counted(r.metrics.bytes.WithLabelValues("to_pod"))})
	return true
}

// rawServed says whether node is to be tried with the raw port-forward.
func (r *Relay) rawServed(node string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	until, ok := r.noRaw[node]
	if ok && r.now().After(until) {
		delete(r.noRaw, node)
		return true
	}
	return !ok
}

func counted(c prometheus.Counter) func(int) {
	return func(n int) { c.Add(float64(n)) }
}

// streams creates a request's error and data streams on conn, within
// r.streamTimeout: past it, conn is closed, which ends the wait.
func (r *Relay) streams(conn httpstream.Connection, port int32) (errStream, data httpstream.Stream, err error) {
	expired := atomic.Bool{}
	timer := time.AfterFunc(r.streamTimeout, func() { expired.Store(true); _ = conn.Close() })
	defer timer.Stop()
	errStream, data, err = r.createStreams(conn, port)
	if err != nil && expired.Load() {
		err = fmt.Errorf("no stream within %s: %w", r.streamTimeout, err)
	}
	return errStream, data, err
}

// createStreams creates a request's error and data streams on conn.
func (r *Relay) createStreams(conn httpstream.Connection, port int32) (errStream, data httpstream.Stream, err error) {
	h := http.Header{}
	h.Set(corev1.PortHeader, strconv.Itoa(int(port)))
	h.Set(corev1.PortForwardRequestIDHeader, strconv.FormatInt(r.nextID.Add(1), 10))
	h.Set(corev1.StreamType, corev1.StreamTypeError)
	if errStream, err = conn.CreateStream(h); err != nil {
		return nil, nil, fmt.Errorf("create error stream: %w", err)
	}
	_ = errStream.Close() // only the kubelet writes on it
	h.Set(corev1.StreamType, corev1.StreamTypeData)
	if data, err = conn.CreateStream(h); err != nil {
		_ = errStream.Reset()
		conn.RemoveStreams(errStream)
		return nil, nil, fmt.Errorf("create data stream: %w", err)
	}
	return errStream, data, nil
}

func (r *Relay) acquire(p Pod) *podConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	pc := r.pods[p]
	if pc == nil {
		pc = &podConn{}
		r.pods[p] = pc
	}
	pc.active++
	return pc
}

func (r *Relay) release(p Pod, pc *podConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pc.active--
	if pc.active == 0 && !r.retained[p] {
		r.drop(p, pc)
	}
}

// drop closes a pod's connection; r.mu held.
func (r *Relay) drop(p Pod, pc *podConn) {
	if pc.dial != nil {
		pc.dial.close()
	}
	delete(r.pods, p)
}

// connection returns the pod's open connection, or dials one; the
// connections that ask while a dial is under way wait for it. fresh: the
// connection was dialed for this call or while it waited, not used before.
func (r *Relay) connection(p Pod, pc *podConn) (_ httpstream.Connection, fresh bool, _ error) {
	r.mu.Lock()
	d := pc.dial
	if d != nil && d.usable() {
		r.mu.Unlock()
		select {
		case <-d.done:
		default:
			fresh = true
			<-d.done
		}
		return d.conn, fresh, d.err
	}
	d = &dialing{done: make(chan struct{})}
	pc.dial = d
	r.mu.Unlock()
	r.metrics.dials.Inc()
	d.conn, d.err = r.dialer.Dial(p)
	if d.err != nil {
		r.metrics.dialFailures.Inc()
	}
	close(d.done)
	return d.conn, true, d.err
}

// Retain keeps the connections of pods open while idle and closes the
// idle ones of all other pods; a busy one closes when its last relayed
// connection ends.
func (r *Relay) Retain(pods map[Pod]bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retained = pods
	for p, pc := range r.pods {
		if pc.active == 0 && !pods[p] {
			r.drop(p, pc)
		}
	}
}

// counter counts the bytes written to w.
type counter struct {
	w io.Writer
	c prometheus.Counter
}

func (c counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.c.Add(float64(n))
	return n, err
}
