package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"k8s.io/client-go/rest"

	"github.com/remote-build-nodes/rbn/internal/spdyconn"
	"github.com/remote-build-nodes/rbn/internal/testcert"
)

// echoPort is a pod's port as the node reaches it: it reads its client
// to EOF, then answers what it read after "port N:", and closes.
func echoPort(t *testing.T) func(ctx context.Context, namespace, pod string, port int32) (net.Conn, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var port int32
				if _, err := fmt.Fscanf(c, "%d\n", &port); err != nil {
					return
				}
				got, _ := io.ReadAll(c)
				_, _ = fmt.Fprintf(c, "port %d: %s", port, got)
			}()
		}
	}()
	return func(_ context.Context, namespace, pod string, port int32) (net.Conn, error) {
		if pod != "a" {
			return nil, errdefs.NotFoundf("pod %s/%s not found", namespace, pod)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			_, err = fmt.Fprintf(c, "%d\n", port)
		}
		return c, err
	}
}

func dialRaw(ts *testServer, path string, port int32) (net.Conn, io.Reader, error) {
	u := &url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", ts.shared), Path: path}
	return spdyconn.DialRaw(context.Background(), &rest.Config{BearerToken: "good", TLSClientConfig: rest.TLSClientConfig{CAFile: ts.caFile}}, u, port)
}

// rbn's raw port-forward reaches the pod's port through the node's
// DialPod, authorized by the pods/portforward right as the SPDY one is,
// passes half-closes on, and answers the node's failure to reach the pod
// as an error of its own (not as a server that does not know it).
func TestRawPortForward(t *testing.T) {
	_, pods := podIndex(t, boundPod("ns", "a", "n1"), boundPod("ns", "b", "n1"), boundPod("ns", "gone", "n1"))
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": {DialPod: echoPort(t)}}}
	auth := &fakeAuth{node: "*"}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: auth}, "n1")

	conn, r, err := dialRaw(ts, "/portForward/ns/a", 2222)
	if err != nil {
		t.Fatalf("raw port-forward: %v", err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "ping"); err != nil {
		t.Fatal(err)
	}
	if err := conn.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		t.Fatalf("half-close: %v", err)
	}
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "port 2222: ping" {
		t.Fatalf("read %q, %v; want the pod's answer after the half-close", got, err)
	}
	if a := auth.last(); a == nil || a.GetVerb() != "create" {
		t.Errorf("authorized as %+v, want create", a)
	}

	_, _, err = dialRaw(ts, "/portForward/ns/gone", 22)
	var ue *spdyconn.UpgradeError
	if !errors.As(err, &ue) || ue.StatusCode != http.StatusNotFound || errors.Is(err, spdyconn.ErrRawUnsupported) || !strings.Contains(ue.Message, "not found") {
		t.Errorf("raw port-forward to a pod the node cannot reach: %v, want a 404 of the raw port-forward's", err)
	}
	_, _, err = dialRaw(ts, "/portForward/ns/a", 0)
	if !errors.As(err, &ue) || ue.StatusCode != http.StatusBadRequest {
		t.Errorf("raw port-forward to port 0: %v, want 400", err)
	}

	// Only with the pod's pods/portforward right (or nodes/proxy).
	*auth = fakeAuth{node: "a"}
	if _, _, err := dialRaw(ts, "/portForward/ns/b", 22); !errors.As(err, &ue) || ue.StatusCode != http.StatusForbidden {
		t.Errorf("raw port-forward to ns/b without a right to it: %v, want 403", err)
	}
}

// A node without DialPod (and so a server that does not know the
// protocol) is told from a refusal: the client falls back.
func TestRawPortForwardUnsupported(t *testing.T) {
	_, pods := podIndex(t, boundPod("ns", "a", "n1"))
	nodes := &servedNodes{m: map[string]*NodeHandlers{"n1": {}}}
	ts := startServer(t, Config{Pods: pods, Handlers: nodes.handlers, Auth: &fakeAuth{node: "*"}}, "n1")
	_, _, err := dialRaw(ts, "/portForward/ns/a", 22)
	var ue *spdyconn.UpgradeError
	if !errors.As(err, &ue) || ue.StatusCode != http.StatusNotImplemented {
		t.Errorf("raw port-forward on a node without DialPod: %v, want 501", err)
	}

	// An rbn-kubelet older than the protocol answers as virtual-kubelet's
	// SPDY upgrader does.
	old := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "unable to upgrade: missing upgrade headers in request", http.StatusBadRequest)
	})
	srv := startTLS(t, old)
	u := &url.URL{Scheme: "https", Host: srv.addr, Path: "/portForward/ns/a"}
	_, _, err = spdyconn.DialRaw(context.Background(), &rest.Config{BearerToken: "good", TLSClientConfig: rest.TLSClientConfig{CAFile: srv.caFile}}, u, 22)
	if !errors.Is(err, spdyconn.ErrRawUnsupported) {
		t.Errorf("raw port-forward to a server that does not know it: %v, want ErrRawUnsupported", err)
	}
}

// tlsServer is an HTTPS server with a self-signed certificate.
type tlsServer struct{ addr, caFile string }

func startTLS(t *testing.T, h http.Handler) tlsServer {
	t.Helper()
	certFile, keyFile, _ := testcert.SelfSigned(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.ServeTLS(ln, certFile, keyFile) }()
	t.Cleanup(func() { _ = srv.Close() })
	return tlsServer{addr: ln.Addr().String(), caFile: certFile}
}
