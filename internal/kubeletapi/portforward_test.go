package kubeletapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// A port-forward reaches the port-forward handler of the pod's node. The
// forwarding streams call their handler with a context of their own, not
// the request's, which carries the node's handlers.
func TestPortForwardReachesTheNodesHandler(t *testing.T) {
	_, pods := podIndex(t, boundPod("ns", "a", "n1"))
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": {
		PortForward: func(_ context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
			defer stream.Close()
			_, err := fmt.Fprintf(stream, "%s/%s:%d", namespace, pod, port)
			return err
		},
	}}}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}}, "n1")
	conn, err := dialPortForward(t, ts, "/portForward/ns/a")
	if err != nil {
		t.Fatalf("port-forward upgrade: %v", err)
	}
	defer conn.Close()
	if got, want := forwardOnce(t, conn), "ns/a:8080"; got != want {
		t.Errorf("forwarded %q, want %q from n1's handler", got, want)
	}
}

// A caller without nodes/proxy but allowed to create pods/portforward on
// the pod (rbn-portal) may port-forward to that pod, and to no other.
func TestPortForwardIsAllowedByThePodsPortForwardRight(t *testing.T) {
	_, pods := podIndex(t, boundPod("ns", "a", "n1"), boundPod("ns", "b", "n1"))
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": {
		PortForward: func(_ context.Context, namespace, pod string, port int32, stream io.ReadWriteCloser) error {
			defer stream.Close()
			_, err := fmt.Fprintf(stream, "%s/%s:%d", namespace, pod, port)
			return err
		},
	}}}
	auth := &fakeAuth{node: "a"} // allows what is named "a": pod ns/a, not node n1
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: auth}, "n1")
	conn, err := dialPortForward(t, ts, "/portForward/ns/a")
	if err != nil {
		t.Fatalf("port-forward to ns/a with its pods/portforward right: %v", err)
	}
	defer conn.Close()
	if got, want := forwardOnce(t, conn), "ns/a:8080"; got != want {
		t.Errorf("forwarded %q, want %q", got, want)
	}
	a := auth.last()
	if a == nil || a.GetResource() != "pods" || a.GetSubresource() != "portforward" || a.GetNamespace() != "ns" || a.GetVerb() != "create" {
		t.Errorf("allowed as %+v, want create pods/portforward in ns", a)
	}
	if _, err := dialPortForward(t, ts, "/portForward/ns/b"); err == nil || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), "pods/portforward ns/b") {
		t.Errorf("port-forward to ns/b without a right to it: %v, want forbidden, naming the right", err)
	}
}

// dialPortForward upgrades a port-forward request to path on ts's shared
// port, with the token fakeAuth knows.
func dialPortForward(t *testing.T, ts *testServer, path string) (httpstream.Connection, error) {
	t.Helper()
	return dialPortForwardAt(t, ts, fmt.Sprintf("127.0.0.1:%d", ts.shared), path)
}

// dialPortForwardAt is dialPortForward to address, which leads to ts.
func dialPortForwardAt(t *testing.T, ts *testServer, address, path string) (httpstream.Connection, error) {
	t.Helper()
	rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{BearerToken: "good", TLSClientConfig: rest.TLSClientConfig{CAFile: ts.caFile}})
	if err != nil {
		t.Fatal(err)
	}
	u := &url.URL{Scheme: "https", Host: address, Path: path}
	conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
	return conn, err
}

// The port-forward route writes each SPDY frame whole: one TLS record per
// data frame where spdystream's three writes made three
// (spdyconn.Frames). Counted by the client, from the records' headers.
func TestPortForwardWritesWholeFrames(t *testing.T) {
	const chunks = 32
	_, pods := podIndex(t, boundPod("ns", "a", "n1"))
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": {
		PortForward: func(_ context.Context, _, _ string, _ int32, stream io.ReadWriteCloser) error {
			defer stream.Close()
			chunk := bytes.Repeat([]byte("x"), 1024)
			for range chunks {
				if _, err := stream.Write(chunk); err != nil {
					return err
				}
			}
			return nil
		},
	}}}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}}, "n1")
	counter := countingProxy(t, fmt.Sprintf("127.0.0.1:%d", ts.shared))
	conn, err := dialPortForwardAt(t, ts, counter.addr, "/portForward/ns/a")
	if err != nil {
		t.Fatalf("port-forward upgrade: %v", err)
	}
	defer conn.Close()
	before := counter.count()
	if got := forwardOnce(t, conn); len(got) != chunks*1024 {
		t.Fatalf("forwarded %d bytes, want %d", len(got), chunks*1024)
	}
	// Whole frames: a record per chunk, and a few for the streams' replies
	// and ends. Frames written in parts: three records per chunk.
	if n := counter.count() - before; n >= 2*chunks {
		t.Errorf("%d TLS records for %d data frames: frames are written in parts", n, chunks)
	}
}

// recordCounter is a TCP proxy to a TLS server that counts the TLS records
// the server sends, from their 5-byte headers.
type recordCounter struct {
	addr    string
	mu      sync.Mutex
	header  []byte // of the record being read, while incomplete
	left    int    // payload bytes of the record being read
	records int
}

// countingProxy serves one connection to target at the returned counter's
// address.
func countingProxy(t *testing.T, target string) *recordCounter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	c := &recordCounter{addr: ln.Addr().String()}
	go func() {
		client, err := ln.Accept()
		if err != nil {
			return
		}
		defer client.Close()
		server, err := net.Dial("tcp", target)
		if err != nil {
			return
		}
		defer server.Close()
		go func() { _, _ = io.Copy(server, client) }()
		_, _ = io.Copy(client, io.TeeReader(server, c))
	}()
	return c
}

func (c *recordCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for b := p; len(b) > 0; {
		if c.left > 0 {
			k := min(c.left, len(b))
			c.left, b = c.left-k, b[k:]
			continue
		}
		k := min(5-len(c.header), len(b))
		c.header, b = append(c.header, b[:k]...), b[k:]
		if len(c.header) == 5 {
			c.records++
			c.left, c.header = int(binary.BigEndian.Uint16(c.header[3:])), c.header[:0]
		}
	}
	return len(p), nil
}

func (c *recordCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.records
}

// forwardOnce makes one request for port 8080 on conn and returns what the
// pod's side wrote, failing the test on an error or an error-stream message.
func forwardOnce(t *testing.T, conn httpstream.Connection) string {
	t.Helper()
	headers := http.Header{}
	headers.Set(corev1.PortHeader, "8080")
	headers.Set(corev1.PortForwardRequestIDHeader, "0")
	headers.Set(corev1.StreamType, corev1.StreamTypeError)
	errStream, err := conn.CreateStream(headers)
	if err != nil {
		t.Fatal(err)
	}
	_ = errStream.Close() // nothing to send: the server writes failures here
	headers.Set(corev1.StreamType, corev1.StreamTypeData)
	data, err := conn.CreateStream(headers)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(data)
	if err != nil {
		t.Fatal(err)
	}
	if failure, _ := io.ReadAll(errStream); len(failure) != 0 {
		t.Errorf("error stream %q", failure)
	}
	return string(got)
}

// A session on a node's port (a port-forward here: a hijacked connection,
// as exec and attach are) outlives the release of the port (a restart of
// the node's runtime) but ends with EndSessions (another replica serves
// the node now); a session on another node's port stays up.
func TestEndSessionsClosesANodesConnections(t *testing.T) {
	_, pods := podIndex(t, boundPod("ns", "a", "n1"))
	handler := &NodeHandlers{PortForward: func(ctx context.Context, _, _ string, _ int32, stream io.ReadWriteCloser) error {
		defer stream.Close()
		_, err := io.Copy(stream, stream) // echo until the client or the connection goes
		return err
	}}
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": handler}}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}}, "n1")

	rt, upgrader, err := spdy.RoundTripperFor(&rest.Config{BearerToken: "good", TLSClientConfig: rest.TLSClientConfig{CAFile: ts.caFile}})
	if err != nil {
		t.Fatal(err)
	}
	dial := func(port int32) httpstream.Connection {
		t.Helper()
		u := &url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", port), Path: "/portForward/ns/a"}
		conn, _, err := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u).Dial(portforward.PortForwardProtocolV1Name)
		if err != nil {
			t.Fatalf("port-forward upgrade on port %d: %v", port, err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	onNode, onShared := dial(ts.nodePort), dial(ts.shared)
	echo := func(conn httpstream.Connection, id string) error {
		headers := http.Header{}
		headers.Set(corev1.PortHeader, "8080")
		headers.Set(corev1.PortForwardRequestIDHeader, id)
		headers.Set(corev1.StreamType, corev1.StreamTypeError)
		if _, err := conn.CreateStream(headers); err != nil {
			return err
		}
		headers.Set(corev1.StreamType, corev1.StreamTypeData)
		data, err := conn.CreateStream(headers)
		if err != nil {
			return err
		}
		if _, err := data.Write([]byte("ping")); err != nil {
			return err
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(data, buf); err != nil {
			return err
		}
		if string(buf) != "ping" {
			return fmt.Errorf("echoed %q", buf)
		}
		return nil
	}
	if err := echo(onNode, "0"); err != nil {
		t.Fatalf("session on n1's port: %v", err)
	}

	ts.Release("n1")
	if err := echo(onNode, "1"); err != nil {
		t.Fatalf("session on n1's port after its release: %v, want it still up", err)
	}
	if n := ts.EndSessions("n1"); n != 1 {
		t.Errorf("EndSessions(n1) closed %d connections, want 1", n)
	}
	select {
	case <-onNode.CloseChan():
	case <-time.After(10 * time.Second):
		t.Fatal("the session on n1's port is still up after EndSessions")
	}
	if err := echo(onShared, "0"); err != nil {
		t.Errorf("session on the shared port after EndSessions(n1): %v, want it untouched", err)
	}
	if n := ts.EndSessions("n1"); n != 0 {
		t.Errorf("EndSessions(n1) again closed %d connections, want 0", n)
	}
}
