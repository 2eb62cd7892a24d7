package portal

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/remote-build-nodes/rbn/internal/spdyconn"
	"github.com/remote-build-nodes/rbn/internal/testnet"
)

// rawDialer is a fakeDialer that also serves the raw port-forward: each
// DialRaw hands the relay one end of a TCP connection whose other end
// (the pod's port, as the node relays it) arrives on pods; or answers err.
type rawDialer struct {
	*fakeDialer
	t    *testing.T
	pods chan *net.TCPConn

	mu    sync.Mutex
	err   error
	ports []int32
}

func newRawDialer(t *testing.T) *rawDialer {
	return &rawDialer{fakeDialer: newFakeDialer(), t: t, pods: make(chan *net.TCPConn, 16)}
}

func (d *rawDialer) DialRaw(p Pod, port int32) (net.Conn, io.Reader, error) {
	d.mu.Lock()
	err := d.err
	d.ports = append(d.ports, port)
	d.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	relayEnd, podEnd := testnet.TCPPair(d.t)
	d.pods <- podEnd
	// What the server sent with its answer comes first.
	return relayEnd, io.MultiReader(strings.NewReader("hello "), relayEnd), nil
}

func (d *rawDialer) setErr(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

// A relayed connection goes through the raw port-forward when the dialer
// has it: no SPDY connection, the client's half-close passed on, the pod's
// answer after it, and the bytes counted.
func TestRelayRawCopiesBothWaysWithHalfClose(t *testing.T) {
	d := newRawDialer(t)
	m := NewMetrics()
	r := NewRelay(d, m)
	client, done := serve(t, r, podA)
	var pod *net.TCPConn
	select {
	case pod = <-d.pods:
	case <-time.After(10 * time.Second):
		t.Fatal("no raw dial in 10s")
	}
	if _, err := io.WriteString(client, "ping"); err != nil {
		t.Fatal(err)
	}
	_ = client.CloseWrite()
	got, err := io.ReadAll(pod)
	if err != nil || string(got) != "ping" {
		t.Fatalf("pod read %q, %v; want ping", got, err)
	}
	if _, err := io.WriteString(pod, "pong!"); err != nil {
		t.Fatal(err)
	}
	_ = pod.Close()
	answer, err := io.ReadAll(client)
	if err != nil || string(answer) != "hello pong!" {
		t.Errorf("client read %q, %v; want the server's first bytes, then pong!", answer, err)
	}
	wait(t, done, "Serve returns after both sides ended")
	if d.count() != 0 {
		t.Errorf("%d SPDY dials, want none", d.count())
	}
	if got := testutil.ToFloat64(m.raw); got != 1 {
		t.Errorf("raw connections %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("to_pod")); got != 4 {
		t.Errorf("bytes to the pod %v, want 4", got)
	}
	if got := testutil.ToFloat64(m.bytes.WithLabelValues("from_pod")); got != 11 {
		t.Errorf("bytes from the pod %v, want 11", got)
	}
	if d.ports[0] != podA.Port {
		t.Errorf("dialed port %d, want %d", d.ports[0], podA.Port)
	}
}

// A node whose rbn-kubelet does not serve the raw port-forward (older than
// the portal) is relayed to over SPDY, and tried raw again after rawRetry.
// A refusal of the node's (nothing listens) ends the connection, with no
// SPDY attempt.
func TestRelayRawFallsBackWhereUnsupported(t *testing.T) {
	d := newRawDialer(t)
	m := NewMetrics()
	r := NewRelay(d, m)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return now }
	d.setErr(fmt.Errorf("dial: %w", spdyconn.ErrRawUnsupported))

	client, done := serve(t, r, podA)
	echo(t, dialed(t, d.fakeDialer))
	roundTrip(t, client, "over spdy")
	wait(t, done, "Serve returns")
	client, done = serve(t, r, podA)
	echo(t, dialed(t, d.fakeDialer))
	roundTrip(t, client, "again")
	wait(t, done, "Serve returns")
	if n := len(d.ports); n != 1 {
		t.Errorf("%d raw dials, want 1: the node is not tried again before rawRetry", n)
	}
	if got := testutil.ToFloat64(m.rawUnsupported); got != 1 {
		t.Errorf("raw unsupported %v, want 1", got)
	}

	now = now.Add(rawRetry + time.Second)
	d.setErr(&spdyconn.UpgradeError{StatusCode: http.StatusInternalServerError, Message: "connect failed", Header: http.Header{spdyconn.RawPortForwardHeader: {spdyconn.RawPortForward}}})
	client, done = serve(t, r, podA)
	wait(t, done, "Serve returns after the node refused")
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("client read %v, want EOF", err)
	}
	if n := len(d.ports); n != 2 {
		t.Errorf("%d raw dials, want 2: tried again after rawRetry", n)
	}
	if got := testutil.ToFloat64(m.failed.WithLabelValues(ReasonPortForward)); got != 1 {
		t.Errorf("port-forward failures %v, want 1", got)
	}
	if d.count() != 2 {
		t.Errorf("%d SPDY dials, want 2 (none for the refused connection)", d.count())
	}
}
