package portal

import (
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"

	"github.com/remote-build-nodes/rbn/internal/testnet"
)

// fakeStream is one end of a port-forward stream: reads from r, writes to w.
type fakeStream struct {
	headers http.Header
	r       *io.PipeReader
	w       *io.PipeWriter
}

func (s *fakeStream) Read(p []byte) (int, error)  { return s.r.Read(p) }
func (s *fakeStream) Write(p []byte) (int, error) { return s.w.Write(p) }
func (s *fakeStream) Close() error                { return s.w.Close() }
func (s *fakeStream) Reset() error {
	_ = s.r.CloseWithError(errors.New("stream reset"))
	return s.w.CloseWithError(errors.New("stream reset"))
}
func (s *fakeStream) Headers() http.Header { return s.headers }
func (s *fakeStream) Identifier() uint32   { return 0 }

// fakeConn is a port-forward connection whose requests' far ends (the
// kubelet's error and data streams) arrive on kubelet, paired by request ID.
type fakeConn struct {
	kubelet   chan fakeRequest
	refuse    bool // streams are refused
	hang      bool // stream creation waits until the connection closes
	closed    chan bool
	closeOnce sync.Once

	mu        sync.Mutex
	errStream map[string]*fakeStream // by request ID, until its data stream comes
}

// fakeRequest is the kubelet's side of one request.
type fakeRequest struct{ errStream, data *fakeStream }

func newFakeConn() *fakeConn {
	return &fakeConn{kubelet: make(chan fakeRequest, 16), closed: make(chan bool), errStream: map[string]*fakeStream{}}
}

func (c *fakeConn) CreateStream(h http.Header) (httpstream.Stream, error) {
	c.mu.Lock()
	refuse, hang := c.refuse, c.hang
	c.mu.Unlock()
	if hang {
		<-c.closed // as spdystream's wait ends when the connection closes
		return nil, errors.New("connection closed")
	}
	if refuse {
		return nil, errors.New("refused")
	}
	toKubelet, fromRelay := io.Pipe()
	fromKubelet, toRelay := io.Pipe()
	far := &fakeStream{headers: h.Clone(), r: toKubelet, w: toRelay}
	id := h.Get(corev1.PortForwardRequestIDHeader)
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.Get(corev1.StreamType) == corev1.StreamTypeError {
		c.errStream[id] = far
	} else {
		c.kubelet <- fakeRequest{errStream: c.errStream[id], data: far}
		delete(c.errStream, id)
	}
	return &fakeStream{headers: h, r: fromKubelet, w: fromRelay}, nil
}

func (c *fakeConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}
func (c *fakeConn) CloseChan() <-chan bool             { return c.closed }
func (c *fakeConn) SetIdleTimeout(time.Duration)       {}
func (c *fakeConn) RemoveStreams(...httpstream.Stream) {}

func (c *fakeConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// fakeDialer hands out new conns, sent on dialed too, or err.
type fakeDialer struct {
	dialed chan *fakeConn
	gate   chan struct{} // when set, Dial waits for it

	mu     sync.Mutex
	dials  int
	pods   []Pod // dialed, in order
	err    error
	refuse bool // the conns refuse streams
}

func newFakeDialer() *fakeDialer { return &fakeDialer{dialed: make(chan *fakeConn, 16)} }

func (d *fakeDialer) Dial(p Pod) (httpstream.Connection, error) {
	if d.gate != nil {
		<-d.gate
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dials++
	d.pods = append(d.pods, p)
	if d.err != nil {
		return nil, d.err
	}
	c := newFakeConn()
	c.refuse = d.refuse
	d.dialed <- c
	return c, nil
}

func (d *fakeDialer) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dials
}

// dialed waits for d's next connection.
func dialed(t *testing.T, d *fakeDialer) *fakeConn {
	t.Helper()
	select {
	case c := <-d.dialed:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no port-forward connection dialed in 10s")
		return nil
	}
}

// wait waits for done, closed when what has happened.
func wait(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not in 10s", what)
	}
}

// serve runs r.Serve for a new client connection and returns the client
// end and a channel closed when Serve returns.
func serve(t *testing.T, r *Relay, tg Target) (*net.TCPConn, chan struct{}) {
	t.Helper()
	client, accepted := testnet.TCPPair(t)
	done := make(chan struct{})
	go func() { defer close(done); r.Serve(t.Context(), accepted, tg) }()
	return client, done
}

// kubeletRequest takes a request's error and data streams from c.
func kubeletRequest(t *testing.T, c *fakeConn) (errStream, data *fakeStream) {
	t.Helper()
	var req fakeRequest
	select {
	case req = <-c.kubelet:
	case <-time.After(10 * time.Second):
		t.Fatal("no port-forward request in 10s")
	}
	if req.errStream == nil {
		t.Fatal("a data stream without an error stream before it")
	}
	if got := req.errStream.headers.Get(corev1.StreamType); got != corev1.StreamTypeError {
		t.Errorf("first stream's type %q, want error", got)
	}
	if got := req.data.headers.Get(corev1.StreamType); got != corev1.StreamTypeData {
		t.Errorf("second stream's type %q, want data", got)
	}
	if req.errStream.headers.Get(corev1.PortForwardRequestIDHeader) == "" {
		t.Error("no request ID")
	}
	return req.errStream, req.data
}

var podA = Target{Pod: Pod{Namespace: "ns", Name: "a"}, Port: 22}

func TestRelayCopiesBothWaysWithHalfClose(t *testing.T) {
	d := newFakeDialer()
	m := NewMetrics()
	r := NewRelay(d, m)
	client, done := serve(t, r, podA)
	if _, err := io.WriteString(client, "ping"); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	errStream, data := kubeletRequest(t, dialed(t, d))
	if got := data.headers.Get(corev1.PortHeader); got != "22" {
		t.Errorf("port header %q, want 22", got)
	}
	// The pod reads the client's bytes up to EOF, then answers after it.
	got, err := io.ReadAll(data)
	if err != nil || string(got) != "ping" {
		t.Fatalf("pod read %q, %v; want ping", got, err)
	}
	if _, err := io.WriteString(data, "pong!"); err != nil {
		t.Fatal(err)
	}
	_ = data.Close()
	_ = errStream.Close()
	answer, err := io.ReadAll(client)
	if err != nil || string(answer) != "pong!" {
		t.Errorf("client read %q, %v; want pong!", answer, err)
	}
	wait(t, done, "Serve returns after the pod closed")
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("to_pod")); got != 4 {
		t.Errorf("bytes to the pod %v, want 4", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("from_pod")); got != 5 {
		t.Errorf("bytes from the pod %v, want 5", got)
	}
	if got := testutil.ToFloat64(m.accepted); got != 1 {
		t.Errorf("accepted %v, want 1", got)
	}
}

// echo serves one request on c as a pod that echoes until EOF, and
// returns the port the request asked for.
func echo(t *testing.T, c *fakeConn) string {
	t.Helper()
	errStream, data := kubeletRequest(t, c)
	go func() {
		_, _ = io.Copy(data, data)
		_ = data.Close()
		_ = errStream.Close()
	}()
	return data.headers.Get(corev1.PortHeader)
}

// roundTrip sends msg on client, half-closes, and checks the echo.
func roundTrip(t *testing.T, client *net.TCPConn, msg string) {
	t.Helper()
	if _, err := io.WriteString(client, msg); err != nil {
		t.Fatal(err)
	}
	_ = client.CloseWrite()
	got, err := io.ReadAll(client)
	if err != nil || string(got) != msg {
		t.Errorf("echo %q, %v; want %q", got, err, msg)
	}
}

func TestRelaySharesOneDialAndRedialsWhenClosed(t *testing.T) {
	d := newFakeDialer()
	d.gate = make(chan struct{})
	m := NewMetrics()
	r := NewRelay(d, m)
	r.Retain(map[Pod]bool{podA.Pod: true})
	c1, done1 := serve(t, r, podA)
	c2, done2 := serve(t, r, podA)
	close(d.gate)
	conn := dialed(t, d)
	echo(t, conn)
	echo(t, conn)
	roundTrip(t, c1, "one")
	roundTrip(t, c2, "two")
	wait(t, done1, "first Serve")
	wait(t, done2, "second Serve")
	if n := d.count(); n != 1 {
		t.Errorf("%d dials for two connections, want 1", n)
	}
	if conn.isClosed() {
		t.Error("a retained pod's idle connection was closed")
	}

	// The connection dies: the next accepted connection dials again.
	_ = conn.Close()
	c3, done3 := serve(t, r, podA)
	echo(t, dialed(t, d))
	roundTrip(t, c3, "three")
	wait(t, done3, "third Serve")
	if n := d.count(); n != 2 {
		t.Errorf("%d dials after the connection closed, want 2", n)
	}
	if got := testutil.ToFloat64(m.dials); got != 2 {
		t.Errorf("dials metric %v, want 2", got)
	}
}

func TestRelayClosesClientWhenDialFails(t *testing.T) {
	d := newFakeDialer()
	d.err = errors.New("pods \"a\" not found")
	m := NewMetrics()
	r := NewRelay(d, m)
	client, done := serve(t, r, podA)
	wait(t, done, "Serve returns after the failed dial")
	if got, err := io.ReadAll(client); err != nil || len(got) != 0 {
		t.Errorf("client read %q, %v; want EOF", got, err)
	}
	// The next connection dials again.
	_, done = serve(t, r, podA)
	wait(t, done, "second Serve")
	if n := d.count(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonDial)); got != 2 {
		t.Errorf("failed{Dial} %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.dialFailures); got != 2 {
		t.Errorf("dial failures %v, want 2", got)
	}
}

func TestRelayEndsOnPortForwardError(t *testing.T) {
	d := newFakeDialer()
	m := NewMetrics()
	r := NewRelay(d, m)
	client, done := serve(t, r, podA)
	errStream, data := kubeletRequest(t, dialed(t, d))
	defer data.Close()
	// The kubelet reports that the pod's port refused, and leaves the data
	// stream open: the relay must not wait for it.
	if _, err := io.WriteString(errStream, "connect: connection refused"); err != nil {
		t.Fatal(err)
	}
	_ = errStream.Close()
	wait(t, done, "Serve returns after the error")
	if got, err := io.ReadAll(client); err != nil || len(got) != 0 {
		t.Errorf("client read %q, %v; want EOF", got, err)
	}
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonPortForward)); got != 1 {
		t.Errorf("failed{PortForward} %v, want 1", got)
	}
}

func TestRelayStreamRefusedClosesConnection(t *testing.T) {
	d := newFakeDialer()
	m := NewMetrics()
	r := NewRelay(d, m)
	r.Retain(map[Pod]bool{podA.Pod: true})
	d.refuse = true
	client, done := serve(t, r, podA)
	conn := dialed(t, d)
	wait(t, done, "Serve returns after the refused stream")
	if got, err := io.ReadAll(client); err != nil || len(got) != 0 {
		t.Errorf("client read %q, %v; want EOF", got, err)
	}
	if !conn.isClosed() {
		t.Error("a connection that refused a stream stays open")
	}
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonStream)); got != 1 {
		t.Errorf("failed{Stream} %v, want 1", got)
	}
}

// A pod's connection that served before dies while idle without a word:
// the next relayed connection's streams fail on it (refused, or not made
// within the stream timeout, which closes it), and the relay dials a new
// one for it at once instead of failing the client.
func TestRelayRedialsWhenAUsedConnectionFails(t *testing.T) {
	for _, how := range []string{"refused", "hang"} {
		t.Run(how, func(t *testing.T) {
			d := newFakeDialer()
			m := NewMetrics()
			r := NewRelay(d, m)
			r.streamTimeout = 50 * time.Millisecond
			r.Retain(map[Pod]bool{podA.Pod: true})
			c1, done1 := serve(t, r, podA)
			conn := dialed(t, d)
			echo(t, conn)
			roundTrip(t, c1, "one")
			wait(t, done1, "first Serve")

			conn.mu.Lock()
			conn.refuse, conn.hang = how == "refused", how == "hang"
			conn.mu.Unlock()
			c2, done2 := serve(t, r, podA)
			echo(t, dialed(t, d))
			roundTrip(t, c2, "two")
			wait(t, done2, "second Serve")
			if !conn.isClosed() {
				t.Error("the failed connection stays open")
			}
			if n := d.count(); n != 2 {
				t.Errorf("%d dials, want 2", n)
			}
			if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonStream)); got != 0 {
				t.Errorf("failed{Stream} %v, want 0: the client was served", got)
			}
		})
	}
}

func TestRelayRetainClosesIdleConnectionsOfOtherPods(t *testing.T) {
	d := newFakeDialer()
	r := NewRelay(d, NewMetrics())
	r.Retain(map[Pod]bool{podA.Pod: true})
	client, done := serve(t, r, podA)
	conn := dialed(t, d)
	echo(t, conn)
	// Busy: Retain without the pod leaves it open until the connection ends.
	r.Retain(map[Pod]bool{})
	if conn.isClosed() {
		t.Fatal("a busy connection was closed by Retain")
	}
	roundTrip(t, client, "last")
	wait(t, done, "Serve")
	if !conn.isClosed() {
		t.Error("the connection of a pod no longer retained stays open after its last relayed connection")
	}
}

// dialedPods are the pods dialed so far, in order.
func (d *fakeDialer) dialedPods() []Pod {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.pods)
}
